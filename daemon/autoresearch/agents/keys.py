"""Where the Anthropic API key comes from, and keeping it out of logs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from autoresearch.errors import AgentFatal
from autoresearch.ops.privacy import take_from_environ

ENV_KEY = "ANTHROPIC_API_KEY"
ENV_AUTH_TOKEN = "ANTHROPIC_AUTH_TOKEN"
"""A bearer token for gateways; the SDK would read it from the environment, so it is taken too."""
CREDENTIAL_NAME = "anthropic_api_key"
"""The systemd credential name (LoadCredential=anthropic_api_key:/path/to/key)."""

_KEY_PATTERN = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")


def load_api_key(key_file: Path | None, environ: dict[str, str] | None = None) -> str:
    """The key from, in order: the configured key file, ANTHROPIC_API_KEY, the systemd credential.

    Raises AgentFatal with what to set when there is none (the CLI exits 2).
    """
    env = os.environ if environ is None else environ
    if key_file is not None:
        return _read_key(key_file, "anthropic.api_key_file")
    value = env.get(ENV_KEY, "").strip()
    if value:
        return value
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / CREDENTIAL_NAME).is_file():
        return _read_key(Path(cred_dir) / CREDENTIAL_NAME, "the systemd credential")
    raise AgentFatal(
        f"no Anthropic API key: set {ENV_KEY}, or anthropic.api_key_file in autoresearch.toml, "
        f"or a systemd credential named {CREDENTIAL_NAME} (LoadCredential=)"
    )


def take_api_key(key_file: Path | None) -> tuple[str, str | None]:
    """``load_api_key``, then ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN leave the process environment
    (and its ``/proc/self/environ``): (key, auth token or None), for the SDK client and nothing else.

    Nothing the daemon starts afterwards (runs, git, helpers) can inherit them by accident. Build the
    agent once per process: a second call finds the variables gone.
    """
    key = load_api_key(key_file)
    token = take_from_environ((ENV_KEY, ENV_AUTH_TOKEN)).get(ENV_AUTH_TOKEN)
    return key, token


def _read_key(path: Path, what: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AgentFatal(f"cannot read the Anthropic API key from {what} {path}: {exc.strerror}") from exc
    if not value:
        raise AgentFatal(f"the Anthropic API key file {path} ({what}) is empty")
    return value


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the given secrets and anything shaped like an Anthropic key replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return _KEY_PATTERN.sub("[REDACTED]", text)

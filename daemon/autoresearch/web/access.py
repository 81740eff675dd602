"""Who may read the dashboard: loopback without login; any other address only with a token, sent as
``Authorization: Bearer <token>`` or as the HttpOnly cookie the login form sets (a browser's
EventSource cannot send headers). Never in a URL, and redacted from every log line."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from autoresearch.errors import ConfigError
from autoresearch.ops.config import HttpSettings

log = structlog.get_logger("autoresearch.web")

COOKIE = "autoresearch_token"
CREDENTIAL = "http_token"  # systemd: LoadCredential=http_token:/etc/autoresearch/http_token
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """``HOST:PORT``, ``[v6]:PORT``; port 0 picks a free one."""
        host, sep, port = text.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8765 or [::1]:8765")
        return cls(host, int(port))

    def is_loopback(self) -> bool:
        """Every address the host name resolves to is a loopback address."""
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ConfigError(f"--listen {self.host}: cannot resolve it ({exc})") from exc
        return all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def in_container() -> bool:
    """Docker and Podman leave these marker files in every container."""
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def read_token(http: HttpSettings, environ: dict[str, str] | None = None) -> str | None:
    """The token from ``[http] token_file``, else from systemd's credentials folder, else None."""
    env = os.environ if environ is None else environ
    path = http.token_file
    if path is None and env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL
        path = candidate if candidate.is_file() else None
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"[http] token_file {path}: cannot read it ({exc.strerror})") from exc
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(f"[http] token_file {path}: the token must be one word of at least 16 characters "
                          "(e.g. `openssl rand -hex 32 > FILE`)")
    return token


def required_token(
    listen: Listen, http: HttpSettings, environ: dict[str, str] | None = None,
    container: Callable[[], bool] = in_container,
) -> str | None:
    """The token requests must carry, or None (no login). Refuses (exit 2) a non-loopback listener
    without one, unless it runs in a container published on the host's loopback (explicitly set)."""
    token = read_token(http, environ)
    if token is not None or listen.is_loopback():
        return token
    if not http.container_published_on_loopback:
        raise ConfigError(
            f"refusing to listen on {listen} without a token: anyone who can reach it could read the session. "
            "Put a token in a file and set [http] token_file (or AUTORESEARCH_HTTP__TOKEN_FILE, or systemd "
            f"LoadCredential={CREDENTIAL}:FILE), or listen on 127.0.0.1")
    if not container():
        raise ConfigError("[http] container_published_on_loopback is only for a container whose port the host "
                          "publishes on 127.0.0.1; this is not a container. Set [http] token_file instead")
    log.warning("http.no_token", listen=str(listen), why="container_published_on_loopback")
    return None


def authorized(token: str | None, headers: dict[str, str], cookies: dict[str, str]) -> bool:
    if token is None:
        return True
    given = headers.get("authorization", "")
    bearer = given[7:] if given[:7].lower() == "bearer " else ""
    return any(hmac.compare_digest(candidate.encode(), token.encode())
               for candidate in (bearer, cookies.get(COOKIE, "")) if candidate)


def redact_logs(token: str | None) -> None:
    """Replace the token wherever it would appear in a log line: structlog events and stdlib records
    (uvicorn's own messages)."""
    if token is None:
        return

    def scrub(value: Any) -> Any:
        return value.replace(token, REDACTED) if isinstance(value, str) else value

    def processor(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        return {key: scrub(value) for key, value in event.items()}

    processors = list(structlog.get_config()["processors"])
    structlog.configure(processors=[processor, *processors])

    class Filter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg = scrub(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(scrub(a) for a in record.args)
            return True

    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", ""):
        logging.getLogger(name).addFilter(Filter())

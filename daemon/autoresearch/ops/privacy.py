"""What the daemon keeps to itself: secrets out of its environment, its memory closed to same-uid
processes, and a minimal environment for the helpers it starts (git and the like).

A run or an agent (code an LLM wrote) may run as the daemon's user. Without this module it could read
the daemon's ``/proc/<pid>/environ`` (the Anthropic key, any other token the daemon was started with),
or ptrace it. ``protect_daemon`` marks the process non-dumpable (``PR_SET_DUMPABLE`` = 0): the kernel
then refuses ``/proc/<pid>/environ``, ``mem``, ``maps`` and ptrace to every process without
``CAP_SYS_PTRACE`` (root keeps it, and an unsandboxed run of a root daemon is root). Children are
dumpable again after ``execve``, so the daemon still reads its runs' ``/proc`` entries.
``take_from_environ`` removes a secret from ``os.environ`` *and* blanks it in the original environment
block the kernel shows as ``/proc/<pid>/environ`` (``unsetenv`` alone leaves it there), so even root
reads nothing there.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

import structlog

log = structlog.get_logger("autoresearch.privacy")

HELPER_ENV_KEEP = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ", "TMPDIR",
)  # fmt: skip
"""The only variables of the daemon's environment a helper process (git, ...) inherits."""

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4


def helper_env(extra: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for a helper process: the allow-listed variables, then ``extra``.

    An allow-list, so no secret of the daemon's environment (API keys, tokens, ``AWS_*``,
    ``CREDENTIALS_DIRECTORY``) and no ``GIT_*`` override (``GIT_DIR``, ``GIT_CONFIG_*``) ever reaches one.
    """
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in HELPER_ENV_KEEP if name in source}
    env.update(extra or {})
    return env


def protect_daemon() -> bool:
    """Make this process non-dumpable (Linux); True when the kernel now refuses its /proc to others.

    Called once at daemon start (``autoresearch init`` and ``run``), before any run or agent starts.
    """
    if not sys.platform.startswith("linux"):
        log.info("privacy.not_linux", note="the daemon stays dumpable; same-uid processes can read its memory")
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        log.warning("privacy.prctl_failed", error=os.strerror(err))
        return False
    return bool(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)


def take_from_environ(names: tuple[str, ...], environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Remove ``names`` from the environment and return their (non-empty) values.

    For the process environment (``environ`` None) the values are also overwritten in the kernel's
    view of it (``/proc/self/environ``), so they exist only in the caller's hands afterwards.
    """
    env = os.environ if environ is None else environ
    taken = {name: env.pop(name) for name in names if name in env}
    if environ is None and taken:
        _blank_initial_environ(tuple(taken))
    return {name: value for name, value in taken.items() if value}


def _blank_initial_environ(names: tuple[str, ...]) -> None:
    """Zero the values of ``names`` in the environment block set up by ``execve`` (Linux only).

    ``/proc/<pid>/environ`` shows that block (between ``env_start`` and ``env_end`` of
    ``/proc/self/stat``), not libc's current environment, so ``unsetenv`` does not hide a value there.
    """
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[47]), int(fields[48])  # fields 50 and 51: env_start, env_end
    except (OSError, IndexError, ValueError):
        return  # not Linux, or an old kernel: non-dumpable still closes /proc/<pid>/environ to others
    if not 0 < start < end:
        return
    block = ctypes.string_at(start, end - start)
    for name in names:
        prefix = name.encode() + b"="
        at = 0
        while (at := block.find(prefix, at)) != -1:
            if at == 0 or block[at - 1] == 0:  # the start of an entry, not the middle of a value
                value_at = at + len(prefix)
                value_end = block.find(b"\0", value_at)
                value_end = len(block) if value_end == -1 else value_end
                ctypes.memset(start + value_at, 0, value_end - value_at)
            at += len(prefix)

"""init's check that each command can start: the first word of ``setup``, ``prepare``, ``run``, ``evaluate``
and ``check`` is resolved inside the sandbox, with the session's environment, before anything runs for
real. A missing program is an exit 2 naming it and the fix, instead of a first run crashing with
``exit:127``."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.errors import ProgramMissing, RunnerError

if TYPE_CHECKING:
    from autoresearch.coordinator.phases import Phases

KEYS = ("setup", "prepare", "run", "evaluate", "check")
MISSING = "autoresearch-missing:"
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_UNCHECKABLE = frozenset({
    ".", "alias", "cd", "eval", "exec", "exit", "export", "read", "set", "shift", "source", "trap", "ulimit",
    "umask", "unset", "wait", "if", "for", "while", "case", "{", "(", "!", "true", "false", ":", "test", "[",
})
PROBE_TIMEOUT_S = 120.0


def first_program(command: str) -> str | None:
    """The program a command starts (leading ``VAR=value`` and ``env`` skipped); None when the shell
    decides (a builtin, a keyword, a subshell, or text shlex cannot split)."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    while words and (_ASSIGNMENT.match(words[0]) or words[0] == "env"):
        words = words[1:]
    if not words or words[0] in _UNCHECKABLE or any(c in words[0] for c in "$`;&|<>()"):
        return None
    return words[0]


def programs(phases: Phases, keys: tuple[str, ...]) -> dict[str, str]:
    """Each configured command's program, by config key."""
    found = {}
    for key in keys:
        command = getattr(phases.settings, key)
        program = first_program(command) if command else None
        if program is not None:
            found[key] = program
    return found


def probe_script(words: list[str]) -> str:
    """A shell loop printing ``autoresearch-missing: <word>`` for each word that would not start (a word
    with a / is a path: it must be an executable file; else ``command -v`` finds it on PATH)."""
    quoted = " ".join(shlex.quote(w) for w in words)
    return (f'for p in {quoted}; do case "$p" in */*) [ -x "$p" ] ;; *) command -v "$p" >/dev/null 2>&1 ;; '
            f'esac || echo "{MISSING} $p"; done')


def check_programs(phases: Phases, keys: tuple[str, ...], root: Path, commit: str) -> None:
    """Resolve the programs of ``keys`` in a sandbox from ``root`` (the commit's snapshot), as a check run
    sees it (the environment read-only, HOME, offline); ProgramMissing (exit 2) names the first missing."""
    wanted = programs(phases, keys)
    if not wanted:
        return
    log_path = phases.session.state_dir / "runs" / "probe.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    spec = phases.spec(-1, "check", probe_script(sorted(set(wanted.values()))), log_path, commit, None, root)
    spec = dataclasses.replace(spec, budget=PROBE_TIMEOUT_S, grace=10.0)
    try:
        outcome = phases.runner.run(spec, lambda _handle: None)
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
    finally:
        with contextlib.suppress(OSError):
            log_path.unlink()
    if not outcome.ok:
        raise RunnerError(f"init could not check the commands' programs in the sandbox [{outcome.cause}]: "
                          f"{text[-500:]}")
    missing = {line.removeprefix(MISSING).strip() for line in text.splitlines() if line.startswith(MISSING)}
    for key, program in wanted.items():
        if program in missing:
            raise ProgramMissing(missing_message(phases, key, program))


def missing_message(phases: Phases, key: str, program: str) -> str:
    s = phases.settings
    where = f"{key} = {getattr(s, key)!r} (from {s.source_of(key)})"
    if program == "uv":
        fix = ("install uv on this host (pip install uv, or https://docs.astral.sh/uv/) for the process runner; "
               "the runner image must carry it for Docker")
    elif "/" in program:
        fix = "commit that file (executable), or have setup create it"
    elif s.setup:
        fix = "add it to the repo's environment (what setup installs), or install it in the system or image"
    else:
        fix = ("install it in the system (or the runner image), set setup (e.g. --setup \"uv sync\") to build "
               "the repo's own environment, or fix the command")
    return f"{where}: the program {program!r} is not found inside the sandbox; {fix}. Nothing was changed."

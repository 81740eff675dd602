"""One git process, bounded: a timeout that kills git's whole process group, its failures sorted into
the ``GitFailed`` errors (translated here, once), and lock clashes and hangs retried through
``retry.retrying``.

Sorting matters for the exit code: a lock another program holds (the user's IDE running ``git status``
takes ``index.lock``) or a git stalled on a slow disk passes by itself, so it is retried and, if it
persists, exits 1 for systemd to restart; ``RepoError`` (exit 2, no restart) is raised only by the
pre-flight checks that translate a ``GitRefused`` into what the user must fix.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from autoresearch.errors import GitBusy, GitRefused, GitTimeout, RepoError
from autoresearch.ops.retry import retrying

if TYPE_CHECKING:
    from autoresearch.ops.config import Settings

_LOCK_CLASH = re.compile(r"Unable to create '[^']*\.lock': File exists|could not lock config file|"
                         r"cannot lock ref '[^']*': Unable to create", re.IGNORECASE)
"""git's words for "another git holds the lock" (messages are in English: ``LC_ALL=C``)."""


@dataclass(frozen=True)
class GitPolicy:
    """How long one git command may take and how often a lock clash or a hang is tried again."""

    timeout_s: float = 120.0
    attempts: int = 6
    initial_s: float = 0.25
    max_wait_s: float = 5.0
    sleep: Callable[[float], None] | None = None

    @classmethod
    def from_config(cls, settings: Settings) -> GitPolicy:
        return cls(timeout_s=settings.git.timeout_s, attempts=settings.git.attempts)


DEFAULT_POLICY = GitPolicy()


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: bytes
    stderr: str


def execute(argv: list[str], cwd: Path, env: Callable[[], Mapping[str, str]], stdout: IO[bytes] | None,
            policy: GitPolicy, answer: bool = False) -> Done:
    """Run ``argv`` with retries of lock clashes and hangs. ``answer``: a non-zero exit is an answer
    (``merge-file``'s conflict count, ``merge-base --is-ancestor``), returned, not raised. ``env`` is
    built again for each attempt (it reads the repo's config, which may change in between)."""
    retryer = retrying(retry_on=(GitBusy, GitTimeout), abort_on=(GitRefused, RepoError), attempts=policy.attempts,
                       initial_s=policy.initial_s, max_wait_s=policy.max_wait_s, what=f"git {_verb(argv)}",
                       sleep=policy.sleep)
    return retryer(_once, argv, cwd, env, stdout, policy.timeout_s, answer)


def _once(argv: list[str], cwd: Path, env_of: Callable[[], Mapping[str, str]], stdout: IO[bytes] | None,
          timeout_s: float, answer: bool) -> Done:
    env = env_of()
    if stdout is not None:
        stdout.seek(0)  # a retry writes the whole output again
        stdout.truncate()
    try:
        # Its own session: a timeout kills git and whatever it started (a hook, a helper) as one group,
        # and a Ctrl-C meant for the daemon does not cut a ref update in half.
        proc = subprocess.Popen(argv, cwd=cwd, env={**env, "LC_ALL": "C", "LANGUAGE": ""}, stdin=subprocess.DEVNULL,
                                stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        raise RepoError(f"cannot run git in {cwd}: {exc.strerror} (is git installed and on PATH?)") from exc
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise GitTimeout(f"git {_verb(argv)} did not finish within {timeout_s:g} s in {cwd} (killed); "
                         f"raise git.timeout_s if the repository is that slow") from exc
    stderr = err.decode("utf-8", "replace").strip()
    if proc.returncode == 0 or answer:
        return Done(proc.returncode, out or b"", stderr)
    what = f"git {_verb(argv)} failed in {cwd}: {stderr}"
    if _LOCK_CLASH.search(stderr):
        raise GitBusy(what + " (another git process holds the lock)")
    raise GitRefused(what)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.communicate(timeout=5.0)  # the pipes close with the group
    except subprocess.TimeoutExpired:  # a grandchild left the group and holds a pipe: reap git alone
        proc.wait()


def _verb(argv: list[str]) -> str:
    """The command's words after the ``-c``/``--git-dir`` options, for messages."""
    words: list[str] = []
    skip = False
    for word in argv[1:]:
        if skip:
            skip = False
        elif word == "-c":
            skip = True
        elif not word.startswith("--git-dir=") and not word.startswith("--work-tree="):
            words.append(word)
    return " ".join(words)

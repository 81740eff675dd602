"""What keeps one daemon honest: an exclusive lock per repo, and the systemd watchdog pings.

The watchdog pings only while every worker is alive: the loop's own thread (its phase horizon) and each
lane and drafter thread, which beats its own heart (``Heartbeats``). A lane beats when it takes a job
and, through ``RunSpec.heartbeat``, whenever its runner looks at a run that is queued or running (at
least every 30 s), so a run waiting hours for a GPU or in a cluster's queue is not a hang,
while a lane stuck anywhere (a runner that never returns, a lock never released) stops the pings and
systemd restarts the daemon.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from autoresearch.errors import RepoError
from autoresearch.ops.config import Settings
from autoresearch.ops.sdnotify import Notifier

log = structlog.get_logger("autoresearch.guards")


def no_beat() -> None:
    """The heartbeat of a run nobody watches (a test, a one-off command)."""
    return


@contextlib.contextmanager
def daemon_lock(state_dir: Path, action: str | None = None) -> Iterator[None]:
    """One daemon per repo: an exclusive flock on ``state_dir/daemon.lock`` holding our pid.

    ``init`` takes it too (``action="init"``), so it never archives the journal of a running daemon.
    ``status`` never takes it, so it works while the daemon runs."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fh: IO[str] = (state_dir / "daemon.lock").open("a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            fh.seek(0)
            holder = fh.read().strip()
            repo = state_dir.parent.parent
            if action is None:
                raise RepoError(f"another autoresearch daemon runs on {repo} (pid {holder})") from exc
            raise RepoError(f"cannot {action}: an autoresearch daemon (or another init) runs on {repo} "
                            f"(pid {holder}); stop it first (Ctrl-C, or systemctl stop autoresearch@...)") from exc
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()


@dataclass
class Heart:
    """One worker's liveness: it must beat again within ``horizon_s`` of its last beat."""

    name: str
    horizon_s: float
    due: float


@dataclass
class Heartbeats:
    """The hearts of the threads working now (lanes, drafters), keyed by thread."""

    clock: Callable[[], float] = time.monotonic
    _hearts: dict[int, Heart] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextlib.contextmanager
    def working(self, name: str, horizon_s: float) -> Iterator[None]:
        """The calling thread works (as ``name``) until the block ends; it must beat every ``horizon_s``."""
        key = threading.get_ident()
        with self._lock:
            self._hearts[key] = Heart(name, horizon_s, self.clock() + horizon_s)
        try:
            yield
        finally:
            with self._lock:
                self._hearts.pop(key, None)

    def beat(self, horizon_s: float | None = None) -> None:
        """The calling thread is alive; ``horizon_s``: the next beat may take that long (a long wait ahead)
        rather than its usual horizon. A thread without a heart (the loop's own) is ignored."""
        heart = self._hearts.get(threading.get_ident())
        if heart is not None:
            heart.due = self.clock() + max(heart.horizon_s, horizon_s or 0.0)

    def beater(self) -> Callable[[], None]:
        """A beat of the calling thread's heart that any thread may call (``RunSpec.heartbeat``)."""
        heart = self._hearts.get(threading.get_ident())
        if heart is None:
            return no_beat

        def beat() -> None:
            heart.due = max(heart.due, self.clock() + heart.horizon_s)

        return beat

    def late(self) -> list[str]:
        """The workers past their horizon (hung)."""
        now = self.clock()
        with self._lock:
            return [h.name for h in self._hearts.values() if now >= h.due]


def lane_horizon_s(settings: Settings, lanes: int) -> float:
    """Longest a lane may go without a beat between runs (its runner beats during them): a git command
    retried to its end, plus an evaluation's and a check's timeout per lane. Evaluations and checks now run
    outside the writer lock, so that term is a generous bound for waiting on the lock, kept as it was."""
    judging = (settings.evaluate_timeout + settings.check_timeout) * max(lanes, 1)
    return judging + settings.git.timeout_s * settings.git.attempts + SLACK_S


def draft_horizon_s(settings: Settings) -> float:
    """Longest one proposal may take: at least an hour (a conversation of many turns), the command agent's
    timeout, or every try of one Anthropic request running to its timeout."""
    a = settings.anthropic
    return max(3600.0, settings.command_agent.timeout_s, a.timeout_s * (a.max_retries + 1)) + SLACK_S


SLACK_S = 600.0
"""Added to every horizon: a loaded machine is slow, not hung."""


@contextlib.contextmanager
def watchdog(notifier: Notifier, alive: Callable[[], bool], hearts: Heartbeats | None = None) -> Iterator[None]:
    """Ping systemd's watchdog from a thread while ``alive()`` says the loop is within its current
    phase's expected time and no heart in ``hearts`` is late; a hung loop, lane or drafter stops the
    pings (logged once, naming it) and systemd restarts the daemon."""
    interval = notifier.watchdog_interval_s
    if not interval:
        yield
        return
    done = threading.Event()

    def ping() -> None:
        quiet = False
        while not done.wait(min(interval, 1.0)):
            late = hearts.late() if hearts is not None else []
            if alive() and not late:
                notifier.watchdog()
                quiet = False
            elif not quiet:
                quiet = True
                log.error("watchdog.silent", late=late or ["loop"], note="systemd restarts the daemon")

    threading.Thread(target=ping, name="watchdog", daemon=True).start()
    try:
        yield
    finally:
        done.set()

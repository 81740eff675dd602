"""What keeps one daemon honest: an exclusive lock per repo, and the systemd watchdog pings."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from autoresearch.errors import RepoError
from autoresearch.sdnotify import Notifier


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


@contextlib.contextmanager
def watchdog(notifier: Notifier, alive: Callable[[], bool]) -> Iterator[None]:
    """Ping systemd's watchdog from a thread while ``alive()`` says the loop is within its current
    phase's expected time; a hung loop stops the pings and systemd restarts the daemon."""
    interval = notifier.watchdog_interval_s
    if not interval:
        yield
        return
    done = threading.Event()

    def ping() -> None:
        while not done.wait(min(interval, 1.0)):
            if alive():
                notifier.watchdog()

    threading.Thread(target=ping, name="watchdog", daemon=True).start()
    try:
        yield
    finally:
        done.set()

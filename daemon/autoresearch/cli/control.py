"""Who runs on a repo, and ``autoresearch stop``: the daemon holds an exclusive flock on
``.git/autoresearch/daemon.lock`` (``guards.daemon_lock``) with its pid written inside.

The holder is found in ``/proc/locks`` (read-only), never by taking the lock: a probe that held it for
an instant could make a daemon starting at that moment refuse to run."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from autoresearch.errors import AutoresearchError

LOCK_FILE = "daemon.lock"
PROC_LOCKS = Path("/proc/locks")


class StopFailed(AutoresearchError):
    """The daemon could not be signalled, or did not stop in time (exit 1)."""


def lock_holder(state_dir: Path, proc_locks: Path = PROC_LOCKS) -> int | None:
    """The pid of the daemon (or init) holding the repo's lock, or None when nobody holds it.

    The pid is the one /proc/locks shows, i.e. as this process's PID namespace sees it: a daemon in a
    container, seen from the host, has its host pid (the one written in the file is the container's).
    A holder this namespace cannot see is not listed by the kernel, so it reads as None."""
    lock = state_dir / LOCK_FILE
    try:
        st = lock.stat()
        written = lock.read_text().strip()
    except OSError:
        return None
    try:
        table = proc_locks.read_text()
    except OSError:  # no /proc (not Linux, or hidden): fall back to a non-blocking probe
        return (int(written) if written.isdigit() else None) if _probe(lock) else None
    return _flock_holder(st.st_dev, st.st_ino, written, table)


def _flock_holder(dev: int, ino: int, written: str, table: str) -> int | None:
    """The pid of the exclusive flock on the file in ``/proc/locks`` (``1: FLOCK ADVISORY WRITE pid MAJ:MIN:INO ...``).

    The inode must match, and the device or the pid written in the file: on overlayfs stat() reports the
    overlay's device while /proc/locks names the layer's."""
    device = f"{os.major(dev):02x}:{os.minor(dev):02x}"
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields or len(fields) < 6:  # a waiter on a lock, not a holder
            continue
        kind, mode, holder, where = fields[1], fields[3], fields[4], fields[5].rsplit(":", 1)
        if (kind == "FLOCK" and mode == "WRITE" and where[-1] == str(ino) and holder.isdigit()
                and (where[0] == device or holder == written)):
            return int(holder)
    return None


def _probe(lock: Path) -> bool:
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def stop_daemon(
    state_dir: Path, timeout_s: float, say: Callable[[str], None], poll_s: float = 0.2,
) -> int | None:
    """SIGTERM the lock holder and wait until it lets go of the lock (it first stops and records the
    running experiment). Returns the pid stopped, or None when no daemon runs."""
    pid = lock_holder(state_dir)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid  # it ended between the look-up and the signal
    except PermissionError as exc:
        raise StopFailed(f"not allowed to signal pid {pid} (another user's daemon): stop it as that user, "
                         f"or with `systemctl stop autoresearch@...` if systemd runs it") from exc
    say(f"sent SIGTERM to pid {pid}; waiting up to {timeout_s:g} s while it stops and records the running "
        "experiment")
    deadline = time.monotonic() + timeout_s
    while lock_holder(state_dir) == pid:
        if time.monotonic() >= deadline:
            raise StopFailed(f"pid {pid} still runs after {timeout_s:g} s; wait longer (--timeout), or signal it "
                             f"again to abort at once: kill -TERM {pid}")
        time.sleep(poll_s)
    return pid

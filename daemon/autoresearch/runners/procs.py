"""Processes on the host, found through /proc: start times, process groups, pid namespaces, and killing them.

A PID is only ever signalled together with its kernel start time (or as the group/namespace of one
checked that way), so a recycled PID is never hit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None if gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def same_process(pid: int, ticks: object) -> bool:
    """Whether ``pid`` is still the live process that started at ``ticks`` (False for zombies, bad handles)."""
    if not isinstance(ticks, int) or pid <= 0:
        return False
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and int(fields[19]) == ticks


def signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def kill_group(pgid: int) -> None:
    signal_group(pgid, signal.SIGKILL)


def signal_pid(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _live_stats() -> list[tuple[int, list[str]]]:
    out = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            out.append((int(entry.name), fields))
    return out


def group_pids(pgid: int, reap: subprocess.Popen[bytes] | None = None) -> set[int]:
    """Live (non-zombie) members of a process group."""
    if reap is not None:
        reap.poll()  # collect our own child, so it does not linger as a zombie member
    return {pid for pid, fields in _live_stats() if int(fields[2]) == pgid}


def pid_namespace(pid: int) -> str | None:
    try:
        return str((PROC / str(pid) / "ns" / "pid").readlink())
    except OSError:
        return None


def inner_pid(pid: int) -> int | None:
    """The PID a process has inside its own (innermost) pid namespace (the last NSpid field)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def namespace_pids(ns: str | None) -> set[int]:
    """Live processes in the pid namespace ``ns`` (as ``pid_namespace`` names it): a sandbox's processes."""
    if ns is None:
        return set()
    return {pid for pid, _ in _live_stats() if pid_namespace(pid) == ns}


def wait_gone(alive: Callable[[], set[int]], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll until ``alive()`` is empty; True if it emptied within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while alive():
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


def terminate_group(proc: subprocess.Popen[bytes], pgid: int, kill_timeout_s: float, poll_s: float = 0.05) -> float:
    """SIGTERM a process group, SIGKILL what is left after ``kill_timeout_s``; seconds until all are gone."""
    t0 = time.monotonic()
    signal_group(pgid, signal.SIGTERM)
    if not wait_gone(lambda: group_pids(pgid, reap=proc), kill_timeout_s, poll_s):
        kill_group(pgid)
        wait_gone(lambda: group_pids(pgid, reap=proc), 10.0, poll_s)
    proc.wait()
    return time.monotonic() - t0


def read_environ(pid: int) -> list[bytes]:
    try:
        return (PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return []


def kill_where(select: Callable[[list[bytes]], bool]) -> int:
    """SIGKILL every process (not this one) whose environment (``NAME=value`` entries) ``select`` picks."""
    killed = 0
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if select(read_environ(int(entry.name))):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                continue
    return killed

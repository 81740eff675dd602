"""Hard limits of one process run: a cgroup of its own (v2, or v1 where the host still runs it), nested
under the daemon's own cgroup so a supervisor's accounting still holds. Which one a host gives, and the
rlimit fallback where none can be made: ``enforcers``.

A run joins its group before anything of it runs: the argv ``RunGroup.prefix`` (a tiny ``sh`` that writes
its own PID to the group, then execs the rest), so no child is ever forked outside. ``close`` kills what
is left in the group and removes it; ``oom_kills`` reads the kernel's counter (v2 ``memory.events``, v1
``memory.oom_control``).

cgroup v2 forbids processes in a group that hands controllers to its children: when the daemon's group
does not delegate memory and pids yet, the daemon moves itself into a leaf ``ar-daemon`` beside its runs
(what systemd's ``Delegate=yes`` expects) and enables them. Nothing here writes outside the daemon's own
group.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CGROUP_ROOT = Path("/sys/fs/cgroup")
DAEMON_LEAF = "ar-daemon"
RUN_PREFIX = "ar-run-"
REQUIRED = ("memory", "pids")
JOIN = 'p=$$; while [ "$1" != -- ]; do echo "$p" > "$1" || exit 125; shift; done; shift; exec "$@"'
"""sh: write our PID to each procs file named before ``--``, then exec the command after it."""


class Unavailable(Exception):
    """No cgroup can be made here; the message says why."""


@dataclass(frozen=True)
class Limits:
    memory: int
    pids: int
    cpus: str = ""
    """The lane's cores (``2,3``); empty = the daemon's own."""


class RunGroup(Protocol):
    def prefix(self) -> list[str]:
        """argv that puts the command after it into this group (then execs it)."""
        ...

    def oom_kills(self) -> int: ...

    def peak_bytes(self) -> int | None: ...

    def close(self) -> None:
        """Kill whatever is still in the group and remove it."""
        ...


class Enforcer(Protocol):
    kind: str
    """cgroup v2, cgroup v1, rlimits (fake in tests)."""
    not_enforced: tuple[str, ...]
    """The limits this host does not enforce, each with what applies instead; empty = all enforced."""

    def open(self, tag: str, limits: Limits) -> RunGroup: ...

    def sweep(self, tag: str) -> int:
        """Remove the empty groups named ``tag`` left by a dead daemon; how many."""
        ...


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _procs(group: Path) -> list[int]:
    try:
        return [int(p) for p in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _counter(path: Path, key: str) -> int:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0
    values = dict(line.split(maxsplit=1) for line in lines if " " in line)
    return int(values.get(key, "0"))


def _remove(groups: list[Path], poll_s: float = 0.02, wait_s: float = 10.0) -> None:
    """SIGKILL every process in the groups (v2: cgroup.kill, all at once), wait for them, rmdir."""
    deadline = time.monotonic() + wait_s
    for group in groups:
        if (group / "cgroup.kill").exists():
            try:
                _write(group / "cgroup.kill", "1")
            except OSError:
                pass
        while _procs(group) and time.monotonic() < deadline:
            for pid in _procs(group):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(poll_s)
        try:
            group.rmdir()
        except OSError:
            pass  # still busy (a D-state process): the next sweep takes it


@dataclass
class V2Group:
    path: Path

    def prefix(self) -> list[str]:
        return ["/bin/sh", "-c", JOIN, "sh", str(self.path / "cgroup.procs"), "--"]

    def oom_kills(self) -> int:
        return _counter(self.path / "memory.events", "oom_kill")

    def peak_bytes(self) -> int | None:
        try:
            return int((self.path / "memory.peak").read_text())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        _remove([self.path])


def _delegate(base: Path, pid: int, controllers: list[str]) -> None:
    """Move the daemon into the leaf ``ar-daemon`` (no processes in a group whose children have
    controllers) and enable ``controllers`` for the runs; undone if the group holds other processes."""
    leaf = base / DAEMON_LEAF
    leaf.mkdir(exist_ok=True)
    _write(leaf / "cgroup.procs", str(pid))
    try:
        _write(base / "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))
    except OSError:
        _write(base / "cgroup.procs", str(pid))
        leaf.rmdir()
        raise


@dataclass
class CgroupV2:
    base: Path
    """The daemon's own group (its runs are its children)."""
    controllers: tuple[str, ...]
    kind: str = "cgroup v2"
    not_enforced: tuple[str, ...] = ()

    @classmethod
    def setup(cls, root: Path, relative: str, pid: int) -> CgroupV2:
        own = root / relative.lstrip("/")
        base = own.parent if own.name == DAEMON_LEAF else own
        try:
            available = (base / "cgroup.controllers").read_text().split()
            missing = [c for c in REQUIRED if c not in available]
            if missing:
                raise Unavailable(f"cgroup v2 group {base} is not given the {', '.join(missing)} controller(s)")
            wanted = [c for c in (*REQUIRED, "cpuset") if c in available]
            enabled = (base / "cgroup.subtree_control").read_text().split()
            if any(c not in enabled for c in wanted):
                _delegate(base, pid, [c for c in wanted if c not in enabled])
        except OSError as exc:
            raise Unavailable(f"cannot use cgroup v2 group {base}: {exc.strerror or exc}") from exc
        lost = () if "cpuset" in wanted else ("cpuset (CPU affinity with taskset instead)",)
        return cls(base, tuple(wanted), not_enforced=lost)

    def open(self, tag: str, limits: Limits) -> RunGroup:
        path = self.base / f"{RUN_PREFIX}{tag}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            _write(path / "memory.max", str(limits.memory))
            if (path / "memory.swap.max").exists():
                _write(path / "memory.swap.max", "0")  # as Docker's memory = memory-swap: no swap
            _write(path / "pids.max", str(limits.pids))
            if limits.cpus and "cpuset" in self.controllers:
                _write(path / "cpuset.cpus", limits.cpus)
        except OSError as exc:
            _remove([path])
            raise Unavailable(f"cannot make the run's cgroup {path}: {exc.strerror or exc}") from exc
        return V2Group(path)

    def sweep(self, tag: str) -> int:
        return _sweep(self.base, tag)


def _sweep(base: Path, tag: str) -> int:
    removed = 0
    for group in base.glob(f"{RUN_PREFIX}{tag}-*"):
        _remove([group], wait_s=2.0)
        removed += not group.exists()
    return removed


@dataclass
class V1Group:
    paths: dict[str, Path]

    def prefix(self) -> list[str]:
        return ["/bin/sh", "-c", JOIN, "sh", *(str(p / "cgroup.procs") for p in self.paths.values()), "--"]

    def oom_kills(self) -> int:
        return _counter(self.paths["memory"] / "memory.oom_control", "oom_kill")

    def peak_bytes(self) -> int | None:
        try:
            return int((self.paths["memory"] / "memory.max_usage_in_bytes").read_text())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        _remove(list(self.paths.values()))


@dataclass
class CgroupV1:
    bases: dict[str, Path]
    """controller -> the daemon's own group in that hierarchy."""
    kind: str = "cgroup v1"
    not_enforced: tuple[str, ...] = ()

    @classmethod
    def setup(cls, root: Path, lines: dict[str, str]) -> CgroupV1:
        bases = {}
        for controller in (*REQUIRED, "cpuset"):
            if controller not in lines or not (root / controller).is_dir():
                if controller in REQUIRED:
                    raise Unavailable(f"no cgroup v1 {controller} hierarchy at {root / controller}")
                continue
            base = root / controller / lines[controller].lstrip("/")
            if not os.access(base, os.W_OK):
                raise Unavailable(f"cgroup v1 group {base} is not writable by this user")
            bases[controller] = base
        lost = () if "cpuset" in bases else ("cpuset (CPU affinity with taskset instead)",)
        return cls(bases, not_enforced=lost)

    def open(self, tag: str, limits: Limits) -> RunGroup:
        name = f"{RUN_PREFIX}{tag}-{secrets.token_hex(4)}"
        paths = {c: base / name for c, base in self.bases.items()}
        try:
            for path in paths.values():
                path.mkdir()
            memory = paths["memory"]
            _write(memory / "memory.limit_in_bytes", str(limits.memory))
            if (memory / "memory.memsw.limit_in_bytes").exists():
                _write(memory / "memory.memsw.limit_in_bytes", str(limits.memory))
            _write(paths["pids"] / "pids.max", str(limits.pids))
            if "cpuset" in paths:  # a v1 cpuset group starts empty: nothing could run in it
                parent = self.bases["cpuset"]
                _write(paths["cpuset"] / "cpuset.mems", (parent / "cpuset.mems").read_text().strip())
                _write(paths["cpuset"] / "cpuset.cpus",
                       limits.cpus or (parent / "cpuset.cpus").read_text().strip())
        except OSError as exc:
            _remove(list(paths.values()))
            raise Unavailable(f"cannot make the run's cgroup {name}: {exc.strerror or exc}") from exc
        return V1Group(paths)

    def sweep(self, tag: str) -> int:
        removed = 0
        for group in self.bases["memory"].glob(f"{RUN_PREFIX}{tag}-*"):
            _remove([base / group.name for base in self.bases.values()], wait_s=2.0)
            removed += not group.exists()
        return removed

"""Hard limits of one process run: a cgroup of its own (v2, or v1 where the host still runs it), nested
under the daemon's own cgroup so a supervisor's accounting still holds; where no cgroup can be made, the
rlimits a process can set on itself (``Rlimits``), and a notice saying what is not enforced.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from autoresearch.errors import ConfigError

CGROUP_ROOT = Path("/sys/fs/cgroup")
DAEMON_LEAF = "ar-daemon"
RUN_PREFIX = "ar-run-"
REQUIRED = ("memory", "pids")
JOIN = 'p=$$; while [ "$1" != -- ]; do echo "$p" > "$1" || exit 125; shift; done; shift; exec "$@"'
"""sh: write our PID to each procs file named before ``--``, then exec the command after it."""
Mode = Literal["auto", "v2", "v1", "off"]


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


@dataclass
class NoGroup:
    def prefix(self) -> list[str]:
        return []

    def oom_kills(self) -> int:
        return 0

    def peak_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        pass


@dataclass
class Rlimits:
    """No cgroup: the run gets RLIMIT_NPROC (from pids) through prlimit; memory and cpuset go unenforced."""

    reason: str
    prlimit: str | None = "prlimit"
    """None: not installed, so not even RLIMIT_NPROC."""
    kind: str = "rlimits"
    not_enforced: tuple[str, ...] = field(default=(
        "memory (no limit at all)",
        "pids per run (RLIMIT_NPROC instead: it counts every process of the daemon's user, and not for root)",
        "cpuset (CPU affinity with taskset instead, with lanes)",
    ))

    def open(self, tag: str, limits: Limits) -> RunGroup:
        return _Nproc([] if self.prlimit is None else [self.prlimit, f"--nproc={limits.pids}", "--"])

    def sweep(self, tag: str) -> int:
        return 0


@dataclass
class _Nproc(NoGroup):
    argv: list[str] = field(default_factory=list)

    def prefix(self) -> list[str]:
        return list(self.argv)


@dataclass
class FakeEnforcer:
    """For tests: records the groups opened; ``oom`` makes every run report one OOM kill."""

    kind: str = "fake"
    not_enforced: tuple[str, ...] = ()
    oom: bool = False
    opened: list[tuple[str, Limits]] = field(default_factory=list)

    def open(self, tag: str, limits: Limits) -> RunGroup:
        self.opened.append((tag, limits))
        return _FakeGroup(1 if self.oom else 0)

    def sweep(self, tag: str) -> int:
        return 0


@dataclass
class _FakeGroup(NoGroup):
    kills: int = 0

    def oom_kills(self) -> int:
        return self.kills


def own_groups(proc_cgroup: str) -> tuple[str | None, dict[str, str]]:
    """From /proc/self/cgroup: the v2 path ("0::/x") and the v1 path of each controller."""
    v2, v1 = None, {}
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if number == "0" and not names:
            v2 = path
        for name in names.split(","):
            if name:
                v1[name] = path
    return v2, v1


NO_PRLIMIT = "RLIMIT_FSIZE and RLIMIT_NPROC (no prlimit: install util-linux)"


def detect(mode: Mode, prlimit: str | None, root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup"),
           pid: int | None = None) -> Enforcer:
    """The enforcer for ``mode``: auto tries v2, then v1, then falls back to rlimits (with the reason);
    v2 / v1 insist (ConfigError, exit 2, if that cgroup cannot be made); off: rlimits."""
    enforcer = _pick(mode, prlimit, root, proc_cgroup, pid)
    if prlimit is None:
        enforcer.not_enforced = (*enforcer.not_enforced, NO_PRLIMIT)
    return enforcer


def _pick(mode: Mode, prlimit: str | None, root: Path, proc_cgroup: Path, pid: int | None) -> Enforcer:
    if mode == "off":
        return Rlimits("process.cgroups = off", prlimit)
    try:
        v2, v1 = own_groups(proc_cgroup.read_text())
    except OSError as exc:
        raise_or = Rlimits(f"cannot read {proc_cgroup}: {exc}", prlimit)
        if mode != "auto":
            raise ConfigError(f"process.cgroups = {mode}: {raise_or.reason}") from exc
        return raise_or
    reasons = []
    if mode in ("auto", "v2"):
        try:
            if v2 is None or not (root / "cgroup.controllers").exists():
                raise Unavailable(f"{root} is not a cgroup v2 hierarchy")
            return CgroupV2.setup(root, v2, os.getpid() if pid is None else pid)
        except Unavailable as exc:
            reasons.append(str(exc))
    if mode in ("auto", "v1"):
        try:
            if not v1:
                raise Unavailable(f"{proc_cgroup} names no cgroup v1 hierarchy")
            return CgroupV1.setup(root, v1)
        except Unavailable as exc:
            reasons.append(str(exc))
    if mode != "auto":
        raise ConfigError(f"process.cgroups = {mode}: {'; '.join(reasons)}. Run the daemon where it owns a "
                          f"cgroup (systemd: the shipped unit's Delegate=yes), or set process.cgroups = auto")
    return Rlimits("; ".join(reasons), prlimit)

"""Which per-run limits a host gives (``detect``): a cgroup v2 or v1 enforcer from ``cgroups``, or, where no
cgroup can be made, ``Rlimits``: the rlimits a process sets on itself through prlimit (RLIMIT_NPROC), with
what is then not enforced; and ``FakeEnforcer`` for tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from autoresearch.errors import ConfigError
from autoresearch.runners.cgroups import CGROUP_ROOT, CgroupV1, CgroupV2, Enforcer, Limits, RunGroup, Unavailable

Mode = Literal["auto", "v2", "v1", "off"]


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

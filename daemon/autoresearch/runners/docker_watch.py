"""Watching a running container from the host: its cgroup (peak memory, host PIDs) and its output."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker.errors
import structlog

from autoresearch.errors import GpuError
from autoresearch.runners.gpu import GpuProbe

log = structlog.get_logger("autoresearch.runners.docker")

CGROUP_ROOT = Path("/sys/fs/cgroup")


class CgroupWatch:
    """The container's memory cgroup, found from its init PID (cgroup v1 or v2), sampled on a thread.

    The cgroup vanishes a few tens of ms after the container exits, and Docker 20.10's OOMKilled
    flag misses fast OOM kills, so peak memory and the kernel's oom_kill counter are read every
    ``interval_s``; both are monotonic, so the last sample before exit holds the run's values.
    """

    def __init__(self, init_pid: int, root: Path = CGROUP_ROOT, interval_s: float = 0.02) -> None:
        self.dir = _memory_cgroup(init_pid, root)
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.oom_kills = 0
        self.seen_pids: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> CgroupWatch:
        self.sample()
        if self.dir is not None:
            self._thread = threading.Thread(target=self._loop, name="docker-cgroup", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            if not self.sample():
                return  # the cgroup is gone: the container has exited

    def sample(self) -> bool:
        """Read peak memory and OOM kills; False once the cgroup is gone."""
        if self.dir is None:
            return False
        try:
            for name in ("memory.max_usage_in_bytes", "memory.peak", "memory.current"):
                path = self.dir / name
                if path.exists():
                    self.peak_bytes = max(self.peak_bytes, int(path.read_text()))
                    break
            for name in ("memory.oom_control", "memory.events"):  # v1, v2
                path = self.dir / name
                if path.exists():
                    fields = dict(line.split() for line in path.read_text().splitlines() if line.count(" ") == 1)
                    self.oom_kills = max(self.oom_kills, int(fields.get("oom_kill", 0)))
                    break
        except (OSError, ValueError):
            return False
        return True

    def pids(self, fallback: Callable[[], set[int]] | None = None) -> set[int]:
        """Host PIDs in the container now (for NVML); empty once it is gone. All are kept in seen_pids."""
        pids: set[int] = set()
        if self.dir is not None:
            with contextlib.suppress(OSError, ValueError):
                pids = {int(x) for x in (self.dir / "cgroup.procs").read_text().split()}
        if not pids and fallback is not None:
            pids = fallback()
        self.seen_pids |= pids
        return pids


def _memory_cgroup(pid: int, root: Path) -> Path | None:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            candidate = root / "memory" / path.lstrip("/")
        elif controllers == "" and (root / "cgroup.controllers").exists():
            candidate = root / path.lstrip("/")
        else:
            continue
        if candidate.is_dir():
            return candidate
    return None


def top_pids(container: Any) -> set[int]:
    """Host PIDs via `docker top`, for when the cgroup is not visible from here."""
    try:
        top = container.top()
        col = top["Titles"].index("PID")
        return {int(p[col]) for p in top["Processes"] or []}
    except (docker.errors.DockerException, OSError, ValueError, KeyError):
        return set()


def await_gpu_release(probe: GpuProbe, pids: set[int], wait_s: float, poll_s: float = 1.0) -> bool:
    """After a GPU run, wait until its processes hold no GPU memory; warn while they do. True if released."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            held = probe.used_by(pids) if pids else 0.0
        except GpuError:
            return True  # cannot tell; the next run's GPU check looks at free memory anyway
        if held <= 0:
            return True
        log.warning("docker.gpu_not_released", held_mb=round(held), pids=sorted(pids))
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)

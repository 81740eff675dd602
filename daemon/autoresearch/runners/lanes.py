"""Lanes: the independent places a run can go at the same time (one per GPU, or a share of the CPU).

A lane is data only; the loop hands each run to the runner built for its lane
(``runners.runner_for_lane``). A runner for a lane could as well submit to a cluster scheduler (a
Slurm job asking for the lane's GPUs and cores): the loop never looks inside.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autoresearch.errors import AutoresearchError, ConfigError, GpuError
from autoresearch.runners.gpu import probe_from_environment

if TYPE_CHECKING:
    from autoresearch.ops.config import Settings
    from autoresearch.runners.gpu import GpuDevice, GpuProbe


@dataclass(frozen=True)
class Lane:
    index: int
    """0 .. lanes-1; journaled with every phase of the experiment that runs in it."""
    gpus: tuple[str, ...] = ()
    """The GPUs (NVML indices or UUIDs) this lane's runs get; empty on a CPU-only box."""
    cpus: tuple[int, ...] = ()
    """The CPU cores this lane's runs are pinned to; empty = no pinning."""

    @property
    def cpu_list(self) -> str:
        """Its cores as taskset and Docker's cpuset take them: ``2,3``."""
        return ",".join(str(c) for c in self.cpus)

    @property
    def where(self) -> str:
        """Its devices, for people: ``gpu 0,1``, ``cpu 2,3`` or ``all`` (an unpinned lane)."""
        return f"gpu {','.join(self.gpus)}" if self.gpus else (f"cpu {self.cpu_list}" if self.cpus else "all")

    @property
    def label(self) -> str:
        return f"lane {self.index} ({self.where})"

    @property
    def pinned(self) -> bool:
        """Whether the lane restricts its runs at all (a single default lane does not: today's behaviour)."""
        return bool(self.gpus or self.cpus)


def plan_lanes(settings: Settings, probe: GpuProbe, cpus: Sequence[int] | None = None) -> list[Lane]:
    """The lanes the settings ask for on this host; ConfigError (naming the key) when they cannot exist.

    ``lanes = 1`` is one unpinned lane whatever the host; with the Slurm runner ``lanes = N`` is N unpinned
    lanes (up to N jobs at once; the cluster places them). Otherwise GPUs come from the runner's ``gpus``
    setting as NVML finds them (a host or setting without GPUs splits the CPU cores instead), and each
    lane also gets an equal share of ``cpus`` (default: the cores this process may run on).
    """
    if settings.lanes == 1:
        return [Lane(0)]
    if settings.runner == "slurm":
        return _job_lanes(settings)
    cores = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    pool = _gpu_pool(settings, probe)
    if not pool:
        return _cpu_lanes(settings, cores)
    per = settings.gpus_per_lane
    count = len(pool) // per if settings.lanes == "auto" else settings.lanes
    if count < 1 or count * per > len(pool):
        want = "one lane" if settings.lanes == "auto" else f"{count} lanes"
        key = "gpus_per_lane" if settings.lanes == "auto" else "lanes"
        raise ConfigError(f"{key} ({settings.source_of(key)}): {want} x {per} GPU(s) needs {max(count, 1) * per} "
                          f"GPUs; this host has {len(pool)} usable ({_names(pool)})")
    shares = _split(cores, count) if len(cores) >= count else [()] * count
    return [Lane(i, tuple(str(d.index) for d in pool[i * per:(i + 1) * per]), shares[i]) for i in range(count)]


def _job_lanes(settings: Settings) -> list[Lane]:
    """Slurm: a lane is one job at a time, its GPUs and cores asked of the cluster (``slurm.gres``,
    ``slurm.cpus_per_task``), so nothing of the daemon's host (a login node, often without a GPU) counts."""
    if settings.lanes == "auto":
        raise ConfigError(f"lanes ({settings.source_of('lanes')}): auto counts this host's GPUs, which the Slurm "
                          "runner does not use; set lanes to the number of jobs to run at once")
    return [Lane(i) for i in range(settings.lanes)]


def _cpu_lanes(settings: Settings, cores: list[int]) -> list[Lane]:
    if settings.lanes == "auto":
        return [Lane(0)]  # no GPU to count: one lane with every core, as without lanes
    if settings.lanes > len(cores):
        raise ConfigError(f"lanes ({settings.source_of('lanes')}): {settings.lanes} lanes on a host without GPUs "
                          f"each need a CPU core; this process may use {len(cores)} ({','.join(map(str, cores))})")
    return [Lane(i, (), share) for i, share in enumerate(_split(cores, settings.lanes))]


def _gpu_pool(settings: Settings, probe: GpuProbe) -> list[GpuDevice]:
    """The GPUs the configured runner may give runs, in NVML order."""
    wanted = settings.docker.gpus if settings.runner == "docker" else settings.process.gpus
    if wanted == "none":
        return []
    try:
        found = probe.devices()
    except GpuError as exc:
        raise ConfigError(f"lanes ({settings.source_of('lanes')}): the GPUs cannot be listed: {exc}") from exc
    if wanted == "all":
        return found
    chosen = [d for d in found if str(d.index) in wanted or d.uuid in wanted]
    missing = [w for w in wanted if not any(str(d.index) == w or d.uuid == w for d in found)]
    if missing:
        key = f"{settings.runner}.gpus"
        raise ConfigError(f"{key} ({settings.source_of(settings.runner, 'gpus')}): GPU(s) {', '.join(missing)} not "
                          f"found; this host has {_names(found)}")
    return chosen


def status_lanes(settings: Settings) -> list[Lane]:
    """The lanes as the settings place them on this host (for their GPUs; ``status`` and the dashboard);
    one lane when that fails."""
    if settings.lanes == 1:
        return [Lane(0)]  # no NVML query for the usual case
    try:
        return plan_lanes(settings, probe_from_environment())
    except AutoresearchError:  # the GPUs changed since: status still shows each lane's experiment
        return [Lane(0)]


def _split(cores: list[int], count: int) -> list[tuple[int, ...]]:
    """``count`` contiguous shares of ``cores`` of one size. The remainder is left to the daemon and the agent:
    under a wall-clock budget a lane with one core more trains more steps, a bias the judge would read as a
    gain of whatever ran there (issue 17, finding 7)."""
    size = len(cores) // count
    return [tuple(cores[i * size:(i + 1) * size]) for i in range(count)]


def _names(devices: list[GpuDevice]) -> str:
    return ", ".join(str(d.index) for d in devices) or "none"

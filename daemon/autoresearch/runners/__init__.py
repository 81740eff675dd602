"""Runners execute one experiment's command and say how it ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.ops.config import Settings
    from autoresearch.runners.base import Runner
    from autoresearch.runners.gpu import GpuProbe
    from autoresearch.runners.lanes import Lane


def runner_from_config(settings: Settings, repo_id: str, instance: str) -> Runner:
    """Build the configured runner (imports lazily: the docker SDK is only needed for docker)."""
    if settings.runner == "slurm":
        from autoresearch.runners.slurm import SlurmRunner

        return SlurmRunner.from_config(settings, repo_id=repo_id, instance=instance)
    if settings.runner == "docker":
        from autoresearch.runners.docker import DockerRunner

        return DockerRunner.from_config(settings, repo_id=repo_id, instance=instance)
    from autoresearch.runners.process import ProcessRunner

    return ProcessRunner.from_config(settings, repo_id=repo_id, instance=instance)


def runner_for_lane(
    settings: Settings, repo_id: str, instance: str, lane: Lane, gpu_probe: GpuProbe | None = None
) -> Runner:
    """The configured runner, pinned to ``lane``: its GPUs only (Docker: device_requests, or
    CUDA_VISIBLE_DEVICES in explicit mode; process: CUDA_VISIBLE_DEVICES) and its CPU cores (Docker:
    cpuset; process: CPU affinity). Its orphan reaping spares the other lanes' runs of this instance.
    Before each run it checks the lane's GPUs (GpuError for this lane only: missing, or held by a dead run).
    ``gpu_probe``: NVML when None (``FakeGpu`` in tests and benchmarks). Slurm: each lane's jobs ask for
    ``slurm.gres``/``cpus_per_task`` themselves; the lane only names its jobs."""
    if settings.runner == "slurm":
        from autoresearch.runners.slurm import SlurmRunner

        return SlurmRunner.from_config(settings, repo_id=repo_id, instance=instance, lane=lane)
    if settings.runner == "docker":
        from autoresearch.runners.docker import DockerRunner

        return DockerRunner.from_config(settings, repo_id=repo_id, instance=instance, lane=lane, gpu_probe=gpu_probe)
    from autoresearch.runners.process import ProcessRunner

    return ProcessRunner.from_config(settings, repo_id=repo_id, instance=instance, lane=lane, gpu_probe=gpu_probe)


def lane_runners(
    settings: Settings, repo_id: str, instance: str, gpu_probe: GpuProbe | None = None
) -> list[tuple[Lane, Runner]]:
    """Every lane the settings plan on this host (``lanes.plan_lanes``), each with its pinned runner: what
    ``Loop.lanes`` takes. ConfigError (exit 2, naming ``lanes``/``gpus_per_lane``) for a plan that cannot be."""
    from autoresearch.runners.gpu import probe_from_environment
    from autoresearch.runners.lanes import plan_lanes

    probe = gpu_probe if gpu_probe is not None else probe_from_environment()
    return [(lane, runner_for_lane(settings, repo_id, instance, lane, probe)) for lane in plan_lanes(settings, probe)]

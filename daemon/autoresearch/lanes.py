"""Lanes: the independent places a run can go at the same time (one per GPU, or a share of the CPU).

A lane is data only; the loop hands each run to the runner built for its lane. A runner for a lane
could as well submit to a cluster scheduler (a Slurm job asking for the lane's GPUs): the loop never
looks inside.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lane:
    index: int
    """0 .. lanes-1; journaled with every phase of the experiment that runs in it."""
    gpus: tuple[str, ...] = ()
    """The GPUs (NVML indices or UUIDs) this lane's runs get; empty on a CPU-only box."""
    cpus: tuple[int, ...] = ()
    """The CPU cores this lane's runs are pinned to; empty = no pinning."""

    @property
    def label(self) -> str:
        where = f"gpu {','.join(self.gpus)}" if self.gpus else (f"cpu {_ranges(self.cpus)}" if self.cpus else "all")
        return f"lane {self.index} ({where})"


def _ranges(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in cpus)

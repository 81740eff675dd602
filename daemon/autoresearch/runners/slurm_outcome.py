"""How a Slurm job that ended by itself ended: its cause from Slurm's state and the helper's ``result.json``."""

from __future__ import annotations

from typing import Any

from autoresearch.runners.ending import exit_cause
from autoresearch.runners.slurm_cli import JobInfo


def ending_cause(info: JobInfo | None, result: dict[str, Any] | None) -> tuple[str, str]:
    """How a job that ended by itself (not cancelled by this daemon) ended."""
    if info is not None and info.state == "TIMEOUT":
        return "timeout", f"job {info.job_id} reached Slurm's time limit"
    if info is not None and info.state == "OUT_OF_MEMORY":
        return "oom", f"job {info.job_id} ended OUT_OF_MEMORY (slurm.mem)"
    if info is not None and info.state == "CANCELLED":
        return "cancelled", f"job {info.job_id} was cancelled outside the daemon (reason: {info.reason or 'none'})"
    if result is not None:
        code = result.get("exit_code")
        return exit_cause(code if isinstance(code, int) else None), ""
    state = info.state if info is not None else "unknown (Slurm forgot the job)"
    return "slurm", f"job ended {state} without a result (see its slurm.out)"




def gpu_count(gres: str | None) -> int:
    if not gres or "gpu" not in gres:
        return 0
    last = gres.rsplit(":", 1)[-1]
    return int(last) if last.isdigit() else 1

"""``status``'s view of Slurm jobs: for each lane whose experiment runs as a Slurm job, the job id,
its state, node and queue time, from the journaled handle (``runners/slurm``: ``job_id``,
``submitted_at``, ``started_at``, ``node``, ``attempt``) and what ``squeue`` says now."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from autoresearch.errors import ConfigError, SlurmError, SlurmUnavailable
from autoresearch.journal.store import JournalState
from autoresearch.runners.slurm_ops import QueuedJob, SlurmQueue


def slurm_handle(state: JournalState, n: int | None) -> dict[str, Any] | None:
    """The journaled handle of experiment ``n`` while its training is a Slurm job, else None."""
    exp = state.experiments.get(n) if n is not None else None
    if exp is None or exp.done or exp.phase != "running" or exp.running is None:
        return None
    handle = exp.running.handle
    return handle if handle.get("runner") == "slurm" and handle.get("job_id") else None


def annotate(summary: dict[str, Any], state: JournalState, queue: SlurmQueue | None,
             now: float | None = None) -> None:
    """Add ``job`` to each lane of ``summary`` (None when the lane runs no Slurm job) and ``slurm``: the
    controller's answer (None when no job was asked about). ``queue`` None: from the journal only."""
    handles = {lane["lane"]: slurm_handle(state, lane.get("n")) for lane in summary.get("lanes", [])}
    ids = [str(h["job_id"]) for h in handles.values() if h is not None]
    live: dict[str, QueuedJob] = {}
    controller = None
    if ids and queue is not None:
        try:
            queue.ping()  # at once when the controller is down; squeue would try for ~10 s first
            live = queue.jobs(ids)
            controller = "answers"
        except SlurmUnavailable as exc:
            controller = f"does not answer: {exc}"
        except (ConfigError, SlurmError) as exc:  # no client on this host, or squeue refused: still show
            controller = f"cannot be asked: {exc}"
    summary["slurm"] = controller
    clock = time.time() if now is None else now
    for lane in summary.get("lanes", []):
        handle = handles.get(lane["lane"])
        lane["job"] = None if handle is None else job_fields(handle, live.get(str(handle["job_id"])), clock,
                                                             asked=controller == "answers")


def job_fields(handle: dict[str, Any], live: QueuedJob | None, now: float, asked: bool) -> dict[str, Any]:
    """One job: id, Slurm's state (``squeue``; from the journal when it could not be asked, ``gone`` when
    the controller no longer lists it), node, reason, attempt and seconds queued (still growing while
    it waits)."""
    submitted, started = _epoch(handle.get("submitted_at")), _epoch(handle.get("started_at"))
    if live is not None:
        state = live.state
    elif asked:
        state = "gone"  # ended and forgotten by the controller: the runner records the outcome
    else:
        state = "RUNNING?" if started is not None else "PENDING?"  # what the journal last saw
    queued = None
    if submitted is not None:
        queued = max(0.0, (started if started is not None else now) - submitted)
    return {"job_id": str(handle["job_id"]), "state": state,
            "node": (live.node if live is not None and live.node else None) or handle.get("node") or None,
            "reason": live.reason if live is not None and live.state == "PENDING" else None,
            "attempt": handle.get("attempt"), "queued_s": queued, "queued": started is None}


def job_line(job: dict[str, Any]) -> str:
    """``job 123 RUNNING on node3, queued 4s`` (``PENDING (Resources), queued 61s so far``)."""
    where = f" on {job['node']}" if job.get("node") else ""
    reason = f" ({job['reason']})" if job.get("reason") else ""
    attempt = f", attempt {job['attempt']}" if isinstance(job.get("attempt"), int) and job["attempt"] > 1 else ""
    queued = job.get("queued_s")
    wait = "" if queued is None else f", queued {queued:.0f}s" + (" so far" if job.get("queued") else "")
    return f"job {job['job_id']} {job['state']}{reason}{where}{wait}{attempt}"


def _epoch(value: object) -> float | None:
    """Epoch seconds from a number or an ISO 8601 time."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return dt.datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None

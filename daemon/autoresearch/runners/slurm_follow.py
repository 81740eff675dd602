"""Following one submitted job to its end, on the daemon's clock.

A queued job has no deadline yet; once it runs, its deadline is its start + budget + grace, then it is
cancelled (cause ``timeout``); a stop of the daemon cancels it too (``interrupted``). The job's start
and node are journaled when first seen (``on_started`` with the updated handle). A controller that
stops answering is waited out here, without losing the job: it goes on running meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from autoresearch.errors import SlurmUnavailable
from autoresearch.ops.retry import retrying
from autoresearch.runners.base import OnStarted, RunSpec
from autoresearch.runners.slurm_cli import JobInfo, Slurm

log = structlog.get_logger("autoresearch.runner.slurm")

HEARTBEAT_S = 10.0
RECANCEL_S = 30.0
"""A job still listed this long after its cancel is cancelled again (a lost scancel)."""
STOP_WAIT_S = 10.0
"""How long a stopping daemon waits for its cancelled job to end."""
_UNKNOWN = object()
T = TypeVar("T")


@dataclass
class Ending:
    info: JobInfo | None
    """The job's last state (None: Slurm forgot it before it was seen ending)."""
    by: str | None = None
    """``timeout`` or ``interrupted`` when this daemon cancelled it; None when it ended by itself."""
    wall_s: float = 0.0
    queued_s: float | None = None
    kill_latency_s: float | None = None
    detail: str = ""


@dataclass
class Follower:
    slurm: Slurm
    spec: RunSpec
    poll_s: float
    clock: Callable[[], float] = time.time

    def follow(self, handle: dict[str, Any], on_started: OnStarted) -> Ending:
        job_id = str(handle["job_id"])
        by: str | None = None
        cancelled_at = 0.0
        beat = 0.0
        info: JobInfo | None = None
        while True:
            now = self.clock()
            if now - beat >= HEARTBEAT_S:
                self.spec.heartbeat()
                beat = now
            seen = self._look(job_id)
            if seen is None:
                info = None
                break
            if isinstance(seen, JobInfo):
                info = seen
                self._started(handle, info, on_started)
                if info.ended:
                    break
                if info.held and by is None:
                    self.slurm.release(job_id)  # journaled, then the daemon died before releasing it
            if by is None:
                by = self._due(handle, now)
                if by is not None:
                    cancelled_at = now
                    self._cancel(job_id, by)
            elif now - cancelled_at >= (STOP_WAIT_S if by == "interrupted" else RECANCEL_S):
                if by == "interrupted":
                    break  # stopping: the cancel was sent; do not hold the daemon's stop up longer
                self._cancel(job_id, by)
                cancelled_at = now
            time.sleep(self.poll_s) if self.spec.cancel.is_set() else self.spec.cancel.wait(self.poll_s)
        return self._ending(handle, info, by, cancelled_at)

    def _look(self, job_id: str) -> JobInfo | object | None:
        try:
            return self.slurm.job(job_id)
        except SlurmUnavailable as exc:
            log.warning("slurm.controller_unavailable", n=self.spec.n, job_id=job_id, error=str(exc))
            return _UNKNOWN

    def _started(self, handle: dict[str, Any], info: JobInfo, on_started: OnStarted) -> None:
        if handle.get("started_at") is not None or info.start is None or not info.node:
            return
        # Slurm's start is in whole seconds, on the controller's clock: never before the submission, nor ahead of now.
        handle["started_at"] = max(float(handle["submitted_at"]), min(info.start, self.clock()))
        handle["node"] = info.node
        on_started(dict(handle))
        log.info("slurm.started", n=self.spec.n, job_id=info.job_id, node=info.node,
                 queued_s=round(handle["started_at"] - handle["submitted_at"], 3))

    def _due(self, handle: dict[str, Any], now: float) -> str | None:
        if self.spec.cancel.is_set():
            return "interrupted"
        started = handle.get("started_at")
        if started is not None and now >= float(started) + float(handle.get("deadline_s", self.spec.deadline_s)):
            return "timeout"
        return None

    def _cancel(self, job_id: str, why: str) -> None:
        log.info("slurm.cancel", n=self.spec.n, job_id=job_id, reason=why)
        try:
            self.slurm.cancel(job_id)
        except SlurmUnavailable as exc:
            log.warning("slurm.cancel_failed", n=self.spec.n, job_id=job_id, error=str(exc))  # retried later

    def _ending(self, handle: dict[str, Any], info: JobInfo | None, by: str | None, cancelled_at: float) -> Ending:
        now = self.clock()
        started = handle.get("started_at")
        queued = None if started is None else max(0.0, float(started) - float(handle["submitted_at"]))
        # Cancelled by this daemon: until it saw the job gone (Slurm's end time is the cancel's, not the kill's).
        end = info.end if info is not None and info.end is not None and by is None else now
        wall = 0.0 if started is None else max(0.0, min(end, now) - float(started))
        latency = None if by is None else max(0.0, now - cancelled_at)
        detail = "" if by is None else f"job {handle['job_id']} cancelled by the daemon ({by})"
        return Ending(info=info, by=by, wall_s=wall, queued_s=queued, kill_latency_s=latency, detail=detail)


class Stopped(Exception):
    """The daemon stops while it waits for the controller."""


def patient(spec: RunSpec, what: str, call: Callable[[], T]) -> T:
    """``call``, retried while the controller does not answer (back-off up to 15 s, the heartbeat kept),
    until the daemon stops (``Stopped``)."""

    def pause(seconds: float) -> None:
        spec.heartbeat()
        if spec.cancel.wait(seconds):
            raise Stopped

    for attempt in retrying(retry_on=(SlurmUnavailable,), attempts=None, initial_s=0.5, max_wait_s=15.0, what=what,
                            sleep=pause):
        with attempt:
            return call()
    raise AssertionError("unreachable: retrying re-raises")  # pragma: no cover

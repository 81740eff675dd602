"""A Slurm controller in memory, for unit tests of the Slurm runner: jobs follow scripted fates (time
queued, time running, the state they end in) on the wall clock; nothing runs. A job that ends by itself
writes ``result.json`` in its folder (``--chdir``) as the job-side helper would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.errors import SlurmUnavailable
from autoresearch.runners.slurm_cli import ENDED, JobInfo
from autoresearch.runners.slurm_job import RESULT


@dataclass(frozen=True)
class Fate:
    queue_s: float = 0.0
    run_s: float = 0.1
    state: str = "COMPLETED"
    exit_code: int = 0


@dataclass
class FakeJob:
    job_id: str
    name: str
    folder: Path
    fate: Fate
    args: list[str]
    held: bool = True
    released_at: float | None = None
    state: str = "PENDING"
    start: float | None = None
    end: float | None = None
    reason: str = "JobHeldUser"


@dataclass
class FakeSlurm:
    fates: list[Fate] = field(default_factory=list)
    """One per submission, in order; a plain completion when they run out."""
    down: bool = False
    """While True every call raises SlurmUnavailable (a stopped slurmctld)."""
    submitted: list[FakeJob] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, script: str, args: Sequence[str]) -> str:
        self._answer()
        with self._lock:
            name = next(a.split("=", 1)[1] for a in args if a.startswith("--job-name="))
            folder = Path(next(a.split("=", 1)[1] for a in args if a.startswith("--chdir=")))
            fate = self.fates.pop(0) if self.fates else Fate()
            job = FakeJob(str(100 + len(self.submitted)), name, folder, fate, list(args))
            self.submitted.append(job)
            return job.job_id

    def release(self, job_id: str) -> None:
        self._answer()
        job = self._find(job_id)
        if job is not None and job.held:
            job.held, job.released_at, job.reason = False, time.time(), "Priority"

    def job(self, job_id: str) -> JobInfo | None:
        self._answer()
        job = self._find(job_id)
        return None if job is None else self._info(self._advance(job))

    def jobs(self, name_prefix: str) -> list[JobInfo]:
        self._answer()
        return [self._info(self._advance(j)) for j in self.submitted if j.name.startswith(name_prefix)]

    def cancel(self, job_id: str, signal: str | None = None) -> None:
        self._answer()
        self.cancels.append(job_id)
        self.end(job_id, "CANCELLED", reason="None")

    def ping(self) -> None:
        self._answer()

    def end(self, job_id: str, state: str, reason: str = "None") -> None:
        """End a job now in ``state`` (a test's NODE_FAIL, or someone else's scancel)."""
        job = self._find(job_id)
        if job is not None and job.state not in ENDED:
            job.state, job.end, job.reason = state, time.time(), reason

    def _answer(self) -> None:
        if self.down:
            raise SlurmUnavailable("the Slurm controller does not answer (fake: down)")

    def _find(self, job_id: str) -> FakeJob | None:
        return next((j for j in self.submitted if j.job_id == job_id), None)

    def _advance(self, job: FakeJob) -> FakeJob:
        now = time.time()
        if job.state == "PENDING" and job.released_at is not None and now >= job.released_at + job.fate.queue_s:
            job.state, job.start, job.reason = "RUNNING", job.released_at + job.fate.queue_s, "None"
        if job.state == "RUNNING" and job.start is not None and now >= job.start + job.fate.run_s:
            job.state, job.end = job.fate.state, job.start + job.fate.run_s
            if job.fate.state in ("COMPLETED", "FAILED"):
                job.folder.mkdir(parents=True, exist_ok=True)
                (job.folder / RESULT).write_text(json.dumps({"exit_code": job.fate.exit_code,
                                                             "wall_s": job.fate.run_s}))
        return job

    def _info(self, job: FakeJob) -> JobInfo:
        ran = job.start is not None and job.state != "PENDING"
        return JobInfo(job.job_id, job.name, job.state, reason=job.reason, node="fake0" if ran else "",
                       start=job.start if ran else None, end=job.end, held=job.held)

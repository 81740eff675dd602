"""Runs each training, evaluation and check run as one Slurm job; setup and prepare (which need the
network, which compute nodes often lack) run on the daemon's host with the process runner, writing
into the shared folder (``slurm_paths``).

The budget is kept on the daemon's clock from the job's start: at start + budget + grace the job is
cancelled (Slurm's ``--time`` is only a backstop). Time queued before the start is ``queued_s``. The
journaled handle names the job before it is submitted (write-ahead: a submission is found again by
its name) and holds its id, start and node once known; a restarted daemon re-attaches to it
(``reattach``). Jobs that ended in a state that is not the script's fault (NODE_FAIL, PREEMPTED,
BOOT_FAIL) are submitted again as attempt k with a fresh budget; a cancellation by someone else is
recorded with its reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from autoresearch.coordinator.repo_env import read_stamp as read_json  # a JSON object from a file, or None
from autoresearch.errors import ConfigError, SlurmError, SlurmUnavailable
from autoresearch.ops.config import Settings
from autoresearch.runners import process_limits, slurm_paths, slurm_script
from autoresearch.runners.base import OnStarted, Runner, RunOutcome, RunSpec
from autoresearch.runners.ending import classify
from autoresearch.runners.hashing import changed_files, hash_files
from autoresearch.runners.home import run_home
from autoresearch.runners.lanes import Lane
from autoresearch.runners.slurm_cli import (
    NOT_THE_SCRIPTS_FAULT,
    JobInfo,
    RealSlurm,
    Slurm,
)
from autoresearch.runners.slurm_follow import Follower, Stopped, patient
from autoresearch.runners.slurm_job import RESULT
from autoresearch.runners.slurm_outcome import ending_cause, gpu_count

log = structlog.get_logger("autoresearch.runner.slurm")

LOCAL_KINDS = ("setup", "prepare")
"""Run on the daemon's host (the network): the shared folder is where they write."""


@dataclass
class SlurmRunner:
    settings: Settings
    local: Runner
    """The process runner for setup and prepare."""
    slurm: Slurm = field(default_factory=RealSlurm)
    repo_id: str = ""
    instance: str = ""
    lane: Lane | None = None
    clock: Callable[[], float] = time.time
    name: str = "slurm"
    _linked: bool = False

    @classmethod
    def from_config(cls, settings: Settings, repo_id: str = "", instance: str = "", lane: Lane | None = None,
                    slurm: Slurm | None = None) -> SlurmRunner:
        from autoresearch.runners.process import ProcessRunner

        local = ProcessRunner.from_config(settings, repo_id=repo_id, instance=instance)
        return cls(settings=settings, local=local, slurm=slurm or RealSlurm(), repo_id=repo_id,
                   instance=instance, lane=lane)

    @property
    def prefix(self) -> str:
        """Every job of this repo's daemons is named ``ar-<repo>-<instance>-<lane>-``; then ``<n>-<kind>-a<k>``."""
        return f"{self.repo_prefix}{self._short(self.instance)}-{self._lane_index}-"

    @property
    def repo_prefix(self) -> str:
        return f"ar-{self._short(self.repo_id)}-"

    @property
    def _lane_index(self) -> int:
        return 0 if self.lane is None else self.lane.index

    @staticmethod
    def _short(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def check(self) -> None:
        """The controller answers (else ``SlurmUnavailable``, waited out); ``init`` checks the shared folder."""
        self.slurm.ping()

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        self._link(spec)
        if spec.kind in LOCAL_KINDS:
            return self.local.run(spec, on_started)
        return self._attempts(spec, on_started, None)

    def reattach(
        self, handle: dict[str, Any], spec: RunSpec, on_started: OnStarted | None = None,
    ) -> RunOutcome | None:
        if handle.get("runner") != "slurm":
            return None
        on_started = on_started or (lambda _handle: None)
        self._link(spec)
        log.info("slurm.reattach", n=spec.n, job_id=handle.get("job_id"), attempt=handle.get("attempt"))
        return self._attempts(spec, on_started, handle)

    def reap(self, handle: dict[str, Any]) -> bool:
        """Cancel the job a handle names (a run that will not be re-attached)."""
        job_id = handle.get("job_id") if handle.get("runner") == "slurm" else None
        if not job_id:
            return False
        info = self.slurm.job(str(job_id))
        if info is None or info.ended:
            return False
        self.slurm.cancel(str(job_id))
        return True

    def reap_orphans(self) -> int:
        """Cancel this instance's own jobs on this lane: a restarted lane's leftovers. Jobs of an earlier
        instance are never reaped here: the journal names each (write-ahead) and ``reattach`` takes them up."""
        killed = self.local.reap_orphans()  # a killed daemon's setup or prepare on this host
        for info in self.slurm.jobs(self.prefix):
            if not info.ended:
                self.slurm.cancel(info.job_id)
                killed += 1
        return killed

    def _link(self, spec: RunSpec) -> None:
        if not self._linked:
            shared = self.settings.slurm.shared_dir
            assert shared is not None, "validated by Settings: runner = slurm needs slurm.shared_dir"
            slurm_paths.link_state(slurm_paths.state_dir_of(spec.workdir), shared, self.repo_id)
            self._linked = True

    def _attempts(self, spec: RunSpec, on_started: OnStarted, handle: dict[str, Any] | None) -> RunOutcome:
        try:
            return self._attempt_all(spec, on_started, handle)
        except Stopped:
            return RunOutcome(cause="interrupted", detail="the daemon stopped while Slurm's controller did not answer")

    def _attempt_all(self, spec: RunSpec, on_started: OnStarted, handle: dict[str, Any] | None) -> RunOutcome:
        attempt = int(handle["attempt"]) if handle else 1
        while True:
            outcome, info = self._attempt(spec, on_started, attempt, handle)
            if info is None or info.state not in NOT_THE_SCRIPTS_FAULT:
                return outcome
            if attempt >= self.settings.slurm.max_attempts:
                return RunOutcome(cause=info.state.lower(), detail=f"job {info.job_id} ended {info.state} "
                                  f"{attempt} times (not the script's fault; slurm.max_attempts)",
                                  wall_s=outcome.wall_s, queued_s=outcome.queued_s)
            log.warning("slurm.resubmit", n=spec.n, job_id=info.job_id, state=info.state, attempt=attempt + 1)
            attempt, handle = attempt + 1, None

    def _attempt(self, spec: RunSpec, on_started: OnStarted, attempt: int,
                 handle: dict[str, Any] | None) -> tuple[RunOutcome, JobInfo | None]:
        # A journaled name is kept: an earlier daemon's jobs carry its instance in their names.
        name = (str(handle["name"]) if handle and handle.get("name")
                else slurm_script.job_name(self.prefix, spec, attempt))
        folder = slurm_script.job_dir(spec, attempt)
        follower = Follower(self.slurm, spec, self.settings.slurm.poll_s, self.clock)
        # The run's home layer lives in the job's folder, where the loop's start-up sweep of killed runs'
        # layers (runs/<n>/.home-*) does not reach: a re-attached job still uses the one it started with.
        with run_home(dataclasses.replace(spec, log_path=folder / slurm_script.SCRIPT)) as home:
            if handle is None or not handle.get("job_id"):
                handle = self._submit(spec, on_started, attempt, name, folder, home, handle)
            ending = follower.follow(handle, on_started)
        for layer in folder.glob(".home-*"):  # a killed daemon's layer: its job is over now
            shutil.rmtree(layer, ignore_errors=True)
        if ending.info is not None and ending.info.state in NOT_THE_SCRIPTS_FAULT and ending.by is None:
            return RunOutcome(cause="resubmit", wall_s=ending.wall_s, queued_s=ending.queued_s), ending.info
        return self._outcome(spec, folder, ending), ending.info

    def _submit(self, spec: RunSpec, on_started: OnStarted, attempt: int, name: str, folder: Path,
                home: Path | None, handle: dict[str, Any] | None) -> dict[str, Any]:
        """Journal the job by name first, then submit it held, record its id, then release it: a daemon
        killed anywhere in between finds it again by name (``reattach``), so none runs unjournaled."""
        journaled = handle is not None  # else the name was just drawn (a random token): no job can have it yet
        handle = {"runner": "slurm", "kind": "slurm", "name": name, "job_id": None, "attempt": attempt,
                  "submitted_at": self.clock(), "started_at": None, "node": None, "lane": self._lane_index,
                  "deadline_s": spec.deadline_s} if handle is None else dict(handle)
        found = ([j for j in patient(spec, "squeue", lambda: self.slurm.jobs(name)) if j.name == name]
                 if journaled else [])
        if found:  # submitted before a crash (or a timed-out sbatch that did reach the controller)
            handle["job_id"] = found[0].job_id
            on_started(handle)
            if found[0].held:
                self.slurm.release(found[0].job_id)
            return handle
        on_started(handle)
        watched = (spec.target, *spec.readonly)
        script = slurm_script.write_job(self.settings, spec, folder, home, self._marks(), name)
        assert spec.snapshot is not None
        (folder / slurm_script.HASHES).write_text(json.dumps(hash_files(spec.snapshot, watched)))
        args = slurm_script.sbatch_args(self.settings, spec, name, folder)
        try:
            handle["job_id"] = self._submit_once(spec, name, str(script), args)
        except SlurmError as exc:
            raise ConfigError(f"sbatch refused run {spec.n}'s job: {exc} (check slurm.partition, account, qos, "
                              f"gres, cpus_per_task, mem and extra_args: {' '.join(args)})") from exc
        on_started(handle)
        patient(spec, "scontrol release", lambda: self.slurm.release(str(handle["job_id"])))
        log.info("slurm.submitted", n=spec.n, kind=spec.kind, job_id=handle["job_id"], attempt=attempt)
        return handle

    def _submit_once(self, spec: RunSpec, name: str, script: str, args: list[str]) -> str:
        """sbatch, waiting out a controller that is down; a submission that timed out may still have reached
        it, so the job is looked up by its name before each new try."""
        while True:
            try:
                return self.slurm.submit(script, args)
            except SlurmUnavailable as exc:
                log.warning("slurm.submit_waiting", n=spec.n, error=str(exc))
                found = [j for j in patient(spec, "squeue", lambda: self.slurm.jobs(name)) if j.name == name]
                if found:
                    return found[0].job_id

    def _marks(self) -> dict[str, str]:
        return {"AUTORESEARCH_RUN_OWNER": self.repo_id, "AUTORESEARCH_RUN_INSTANCE": self.instance,
                "AUTORESEARCH_RUN_LANE": str(self._lane_index)}

    def _outcome(self, spec: RunSpec, folder: Path, ending: Any) -> RunOutcome:
        result = read_json(folder / RESULT)
        info: JobInfo | None = ending.info
        cause, detail = ending.by or "", ""
        if not cause:
            cause, detail = ending_cause(info, result)
        before = read_json(folder / slurm_script.HASHES) or {}
        if spec.snapshot is not None and spec.snapshot.is_dir() and before:
            cause, detail = classify(cause, detail, changed=changed_files(before, hash_files(spec.snapshot, before)),
                                     oom=info is not None and info.state == "OUT_OF_MEMORY")
        cause, detail = process_limits.output_cause(cause, detail, spec, None, self.settings.process)
        code = result.get("exit_code") if result else None
        wall = result.get("wall_s") if result else None  # the command's own, measured on the node
        wall_s = float(wall) if isinstance(wall, int | float) and ending.by is None else ending.wall_s
        return RunOutcome(cause=cause, exit_code=code if isinstance(code, int) else None, wall_s=wall_s,
                          kill_latency_s=ending.kill_latency_s, detail=detail or ending.detail,
                          queued_s=ending.queued_s, gpu_count=gpu_count(self.settings.slurm.gres))

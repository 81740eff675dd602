"""The phase machine of one experiment: proposed → committed → running → finished (→ evaluated → checked) → recorded.

Each step journals its phase before (or, for ``running``, as) the side effect it announces, and each
is idempotent, so ``advance`` can resume an experiment from whatever phase a crash left it in.
Policy for a run whose daemon died mid-run: it is reaped and recorded once as ``crash`` with cause
``interrupted`` (never re-run: its result is unknown and a re-run would double its GPU time). From
``finished`` on, ``recording`` takes the run to its row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from autoresearch.coordinator import recording, repo_env
from autoresearch.coordinator.coordinator import Coordinator
from autoresearch.coordinator.evaluation import read_metric
from autoresearch.errors import EngineUnavailable, ImageMissing, RunnerError
from autoresearch.git.workspace import Workspace
from autoresearch.journal.records import Finished, Running
from autoresearch.journal.store import Experiment, Journal
from autoresearch.judging import judge
from autoresearch.ops.config import Settings
from autoresearch.ops.guards import no_beat
from autoresearch.runners.base import RunKind, Runner, RunOutcome, RunSpec
from autoresearch.sessions.session import Session

log = structlog.get_logger("autoresearch.loop")


@dataclass
class Phases:
    settings: Settings
    session: Session
    workspace: Workspace
    journal: Journal
    runner: Runner
    heartbeat: Callable[[], None] = no_beat
    """The lane's watchdog heart, given to every run (``RunSpec.heartbeat``)."""

    @property
    def coordinator(self) -> Coordinator:
        """The one writer (numbers, refs, the judging lock); stateless, so one per use is the same one."""
        return Coordinator(self.settings, self.session, self.workspace, self.journal.without_lane)

    def advance(self, n: int, cancel: threading.Event | None = None) -> Experiment:
        """Drive experiment ``n`` to ``recorded`` from its current phase; returns the final fold."""
        exp = self.load(n)
        if exp.phase == "proposed":
            self.commit(exp)
            exp = self.load(n)
        if exp.phase == "committed":
            self.run(exp, cancel)
            exp = self.load(n)
        if exp.phase == "running":
            self.settle_interrupted(exp, cancel)
            exp = self.load(n)
        if exp.phase in ("finished", "evaluated", "checked"):
            recording.record(self, exp, cancel)
            exp = self.load(n)
        return exp

    def load(self, n: int) -> Experiment:
        return self.journal.load().experiments[n]

    def commit(self, exp: Experiment) -> None:
        if exp.measure_commit:  # a repeat or confirmation: the same commit, measured again
            sha = exp.measure_commit
        elif exp.baseline:
            sha = exp.parent
        else:
            # Built beside the checkout (a private index): other lanes' runs and the branch are untouched.
            message = f"{exp.description}\n\nautoresearch {self.session.tag} experiment {exp.n}"
            sha = self.workspace.make_commit(exp.parent, self.settings.target, exp.content, message, exp.when)
        self.coordinator.committed(exp.n, sha, self.journal.lane)

    def run(self, exp: Experiment, cancel: threading.Event | None = None) -> None:
        commit = exp.commit  # runs from a snapshot of the commit: the checkout stays at the best
        run_dir = self.session.run_dir(exp.n)
        run_dir.mkdir(parents=True, exist_ok=True)
        log_path = run_dir / "run.log"
        log_path.unlink(missing_ok=True)  # a re-run after recovery starts a fresh log
        (run_dir / "stdout.log").unlink(missing_ok=True)
        output = self.output_dir(exp.n)
        shutil.rmtree(output, ignore_errors=True)
        output.mkdir(parents=True)
        started = False

        def on_started(handle: dict[str, Any]) -> None:
            nonlocal started
            started = True
            self.journal.append(Running(type="phase", n=exp.n, phase="running", handle=handle))

        with self.snapshot(str(exp.n), commit) as snap:
            spec = self.train_spec(exp, cancel, snap)
            try:
                outcome = self._setup(exp.n, snap, commit, cancel) or self.runner.run(spec, on_started)
            except (ImageMissing, EngineUnavailable):
                raise  # before any container ran: the loop waits (engine) or exits (image); no row
            except RunnerError as exc:
                if not started:
                    raise
                log.error("run.runner_error", n=exp.n, error=str(exc))
                outcome = RunOutcome(cause="docker", detail=str(exc))
        self.finish(exp.n, outcome, log_path)

    def train_spec(self, exp: Experiment, cancel: threading.Event | None, snap: Path) -> RunSpec:
        run_dir = self.session.run_dir(exp.n)
        spec = self.spec(exp.n, "train", self.settings.run, run_dir / "run.log", exp.commit, cancel, snap,
                         seed=exp.seed)
        # /output, writable for train; stdout kept apart for the metric (metric_source = "stdout")
        return dataclasses.replace(spec, output_dir=self.output_dir(exp.n), stdout_path=run_dir / "stdout.log",
                                   env={**spec.env, **self.mount_env(exp.n, "train")})

    @contextlib.contextmanager
    def _kept_snapshot(self, n: int) -> Iterator[Path]:
        """The snapshot a re-attached run still runs from (left by the killed daemon); removed after it."""
        path = self.session.state_dir / "snapshots" / str(n)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _setup(self, n: int, snap: Path, commit: str, cancel: threading.Event | None) -> RunOutcome | None:
        """setup again if this commit changed its inputs; a failed setup is the run's outcome (cause setup:...)."""
        ran = repo_env.ensure(self, n, snap, commit, cancel)
        if ran is None or ran[1].ok:
            return None
        outcome = ran[1]
        if outcome.cause == "interrupted":
            return outcome  # a stop, not the repo's fault: the run policy for interruptions applies
        detail = f"setup ({', '.join(ran[0])}) failed; its log: {self.session.run_dir(n) / 'setup.log'}"
        return dataclasses.replace(outcome, cause=f"setup:{outcome.cause}", detail=detail)

    @contextlib.contextmanager
    def snapshot(self, name: str, commit: str) -> Iterator[Path]:
        """The commit's files alone, for one run: untracked files of the checkout never reach a run."""
        path = self.session.state_dir / "snapshots" / name
        shutil.rmtree(path, ignore_errors=True)  # a leftover of a crash
        path.parent.mkdir(parents=True, exist_ok=True)
        self.workspace.export(commit, path)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def spec(
        self,
        n: int,
        kind: RunKind,
        command: str,
        log_path: Path,
        commit: str | None,
        cancel: threading.Event | None,
        snapshot: Path | None = None,
        seed: int | None = None,
    ) -> RunSpec:
        s = self.settings
        cache = self.session.cache_dir(s)
        cache.mkdir(parents=True, exist_ok=True)
        env = {"AUTORESEARCH_TIME_BUDGET": f"{s.budget:g}", "AUTORESEARCH_CACHE": str(cache)}
        if seed is not None:
            env["AUTORESEARCH_SEED"] = str(seed)  # a repeat on another seed: a seed lottery does not replicate
        extra: dict[str, Any] = {} if cancel is None else {"cancel": cancel}
        return RunSpec(
            n=n,
            kind=kind,
            command=command,
            workdir=self.workspace.root,
            budget=s.budget,
            grace=s.grace_s,
            env=env,
            log_path=log_path,
            log_cap_bytes=int(s.log_cap_mb * 2**20),
            target=s.target,
            readonly=tuple(s.readonly),
            cache_dir=cache,
            commit=commit,
            snapshot=snapshot,
            home=self.session.home_dir,
            env_dir=self.session.env_dir if s.setup else None,
            heartbeat=self.heartbeat,
            **extra,
        )

    def output_dir(self, n: int) -> Path:
        return self.session.run_dir(n) / "output"

    def eval_data(self) -> Path:
        path = self.settings.eval_data or self.session.state_dir / "eval"
        return path if path.is_absolute() else self.session.repo / path

    def mount_env(self, n: int, kind: RunKind) -> dict[str, str]:
        """Host paths of the run's output and eval data; a runner that mounts them elsewhere (/output, /eval)
        sets these variables to its mount points instead."""
        env = {"AUTORESEARCH_OUTPUT": str(self.output_dir(n))} if kind in ("train", "evaluate", "check") else {}
        if kind in ("evaluate", "prepare"):
            env["AUTORESEARCH_EVAL_DATA"] = str(self.eval_data())
        return env

    def finish(self, n: int, outcome: RunOutcome, log_path: Path) -> None:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        s = self.settings
        stdout_path = log_path.parent / "stdout.log"
        printed = read_metric(log_path, stdout_path, s.metric, s.metric_source) if outcome.ok else None
        self.journal.append(Finished(
            type="phase",
            n=n,
            phase="finished",
            cause=outcome.cause,
            exit_code=outcome.exit_code,
            # With an evaluator the run's own line is only a claim; the evaluator's metric decides.
            metric=None if s.evaluate else printed,
            claimed=printed,
            memory_gb=judge.memory_gb(outcome.peak_memory_gb, text),
            wall_s=round(outcome.wall_s, 3),
            kill_latency_s=outcome.kill_latency_s,
            gpu_count=outcome.gpu_count,
            training_seconds=judge.last_value(text, "training_seconds"),
            detail=outcome.detail,
            log_truncated=outcome.log_truncated,
            queued_s=outcome.queued_s,
        ))

    def settle_interrupted(self, exp: Experiment, cancel: threading.Event | None = None) -> None:
        """A run whose daemon died: re-attached when its runner can (a Slurm job went on without the daemon:
        waited for, its outcome recorded), else reaped and recorded as interrupted."""
        handle = exp.handle
        with self._kept_snapshot(exp.n) as snap:  # a Slurm job still runs from it; local runners return None
            spec = self.train_spec(exp, cancel, snap)
            def on_started(h: dict[str, Any]) -> None:  # a resubmitted job's new handle
                self.journal.append(Running(type="phase", n=exp.n, phase="running", handle=h))

            outcome = self.runner.reattach(handle, spec, on_started)
        if outcome is not None:
            self.finish(exp.n, outcome, spec.log_path)
            return
        reaped = self.runner.reap(handle)
        log.warning("recovery.reaped", n=exp.n, handle=handle, killed=reaped)
        self.journal.append(Finished(type="phase", n=exp.n, phase="finished", cause="interrupted", exit_code=None,
                                     metric=None, memory_gb=0.0, wall_s=0.0, kill_latency_s=None, gpu_count=0,
                                     detail="daemon died during the run"))

"""The phase machine of one experiment: proposed → committed → running → finished (→ evaluated → checked) → recorded.

Each step journals its phase before (or, for ``running``, as) the side effect it announces, and each
is idempotent, so ``advance`` can resume an experiment from whatever phase a crash left it in.
Policy for a run whose daemon died mid-run: it is reaped and recorded once as ``crash`` with cause
``interrupted`` (never re-run: its result is unknown and a re-run would double its GPU time).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import structlog

from autoresearch import branchsync, judge, noise, rebase, repo_env, retention
from autoresearch.config import Settings
from autoresearch.coordinator import Coordinator
from autoresearch.errors import BaselineCrashed, EngineUnavailable, ImageMissing, RunnerError
from autoresearch.evaluation import Steps, read_metric
from autoresearch.journal import Experiment, Journal
from autoresearch.ledger import clean_description, write_results
from autoresearch.records import Finished, Recorded, RowStatus, Running
from autoresearch.runners.base import RunKind, Runner, RunOutcome, RunSpec, log_tail
from autoresearch.session import Session
from autoresearch.workspace import Workspace

log = structlog.get_logger("autoresearch.loop")

# Causes that are not the experiment's fault: an interrupted or engine-killed baseline is re-run.
NOT_THE_SCRIPTS_FAULT = ("interrupted", "docker")


@dataclass
class Phases:
    settings: Settings
    session: Session
    workspace: Workspace
    journal: Journal
    runner: Runner

    @property
    def coordinator(self) -> Coordinator:
        """The one writer (numbers, refs, the judging lock); stateless, so one per use is the same one."""
        return Coordinator(self.settings, self.session, self.workspace, self.journal.shared)

    def advance(self, n: int, cancel: threading.Event | None = None) -> Experiment:
        """Drive experiment ``n`` to ``recorded`` from its current phase; returns the final fold."""
        exp = self._load(n)
        if exp.phase == "proposed":
            self.commit(exp)
            exp = self._load(n)
        if exp.phase == "committed":
            self.run(exp, cancel)
            exp = self._load(n)
        if exp.phase == "running":
            self.settle_interrupted(exp)
            exp = self._load(n)
        if exp.phase in ("finished", "evaluated", "checked"):
            self.record(exp, cancel)
            exp = self._load(n)
        return exp

    def _load(self, n: int) -> Experiment:
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
            spec = self.spec(exp.n, "train", self.settings.run, log_path, commit, cancel, snap, seed=exp.seed)
            # /output, writable for train; stdout kept apart for the metric (metric_source = "stdout")
            spec = dataclasses.replace(spec, output_dir=output, stdout_path=run_dir / "stdout.log",
                                       env={**spec.env, **self.mount_env(exp.n, "train")})
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
        ))

    def settle_interrupted(self, exp: Experiment) -> None:
        """A run whose daemon died: reap what is left of it, then record it as interrupted."""
        handle = exp.handle
        reaped = self.runner.reap(handle)
        log.warning("recovery.reaped", n=exp.n, handle=handle, killed=reaped)
        self.journal.append(Finished(type="phase", n=exp.n, phase="finished", cause="interrupted", exit_code=None,
                                     metric=None, memory_gb=0.0, wall_s=0.0, kill_latency_s=None, gpu_count=0,
                                     detail="daemon died during the run"))

    def record(self, exp: Experiment, cancel: threading.Event | None = None) -> None:
        """Evaluate (a lane job, no lock held), then judge and record under the one writer lock. A would-be
        keep is checked first, also outside the lock; the verdict is then taken again against the best of
        that instant."""
        s, steps, n = self.settings, Steps(self, cancel), exp.n
        if exp.phase == "finished" and s.evaluate and exp.cause == "ok" and not steps.evaluate(exp):
            return  # stopped mid-evaluation: left at `finished`, evaluated again on restart
        while True:
            with self.coordinator.lock:
                exp = self._load(n)
                verdict = steps.verdict(self.journal.load(), exp)
                checkable = verdict.action == "keep" and verdict.reason not in ("first", "repeat", "adopted")
                if not (checkable and s.check and exp.phase != "checked"):
                    self._record(exp, verdict)
                    return
            if not steps.check(exp):
                return  # stopped mid-check: left as it was, checked again on restart

    def _record(self, exp: Experiment, verdict: judge.Verdict) -> None:
        """The row of a judged run, its branch move and the views (under the writer lock)."""
        s = self.settings
        state = self.journal.load()
        best = state.best()
        status = verdict.status
        cause = exp.cause
        reason = _row_reason(verdict, judge.crash_reason(cause, exp.metric, s.metric), exp.detail)
        description = clean_description(exp.description)
        if reason:
            description = clean_description(f"{description} [{reason}]")
        rebased_as = None
        if verdict.action == "rebase" and best is not None:
            merged = rebase.merged_onto(s, self.workspace, exp, best)
            assert merged is not None  # decide saw the same merge succeed
            rebased_as = self.coordinator.rebase(exp, best, merged)  # before this row: write-ahead
        if verdict.reason in LINEAGES:  # another lane's keep landed while it trained
            note = f"rebased as #{rebased_as}" if rebased_as is not None else verdict.reason
            description = clean_description(f"{exp.description} [{note}]")
        new_best = exp if status == "keep" else best
        best_metric = verdict.mean if status == "keep" else noise.best_mean(state)
        self.journal.append(Recorded(
            type="phase",
            n=exp.n,
            phase="recorded",
            status=cast(RowStatus, status),  # judge.Verdict.status is a str; the model validates it
            row_description=description,
            best_commit=None if new_best is None else new_best.commit,
            best_metric=best_metric,
            decision=verdict.action,
            reason=verdict.reason,
            sigma=noise.sigma(state, upto=exp.n),
            z=s.noise.z,
            gain=verdict.gain,
            threshold=verdict.threshold,
            confidence=verdict.confidence,
            mean=verdict.mean,
            lineage=verdict.reason if verdict.reason in LINEAGES else None,
            rebased_as=rebased_as,
        ))
        # Written ahead: a kill before the move is finished by the next start (branchsync moves it forward).
        branchsync.sync(self.workspace, self.session.branch, self.journal.load())
        state = self.journal.load()
        write_results(self.session.repo, state, s.metric)
        retention.prune_outputs(state, s.keep_outputs, self.output_dir)
        self._log_finished(exp, status, description)
        if exp.baseline and status == "crash" and cause not in NOT_THE_SCRIPTS_FAULT:
            tail = log_tail(self.session.run_dir(exp.n) / "run.log", 2000)
            what = f"the adopted commit {exp.commit[:7]}" if exp.adopted else f"the baseline (unchanged {s.target})"
            raise BaselineCrashed(
                f"{what} crashed [{reason}]; fix it and commit it on "
                f"{self.session.branch}, then run again. Log: {self.session.run_dir(exp.n) / 'run.log'}\n{tail}"
            )

    def _log_finished(self, exp: Experiment, status: str, description: str) -> None:
        exp = self._load(exp.n)
        log_fn = log.warning if status == "crash" else log.info
        log_fn(
            "experiment.finished",
            n=exp.n,
            commit=exp.commit[:7],
            metric_name=self.settings.metric,
            metric=exp.metric,
            memory_gb=round(exp.memory_gb, 1),
            status=status,
            description=description,
            cause=exp.cause,
            propose_s=exp.propose_s,
            run_wall_s=exp.wall_s,
            training_seconds=exp.training_seconds,
            kill_latency_s=exp.kill_latency_s,
            cost_usd=exp.usage.cost_usd,
            best=exp.best_metric,
        )


LINEAGES = ("rebase", "stale", "merge-conflict")
"""Verdict reasons of a run overtaken by another lane's keep (``judge.lineage``)."""
ROW_REASONS = ("memory", "checks", "simplification", "less memory", "within noise")


def _row_reason(verdict: judge.Verdict, crash: str | None, detail: Any) -> str | None:
    """What the row's description says in brackets about its verdict."""
    if verdict.status == "crash":
        reason = "implausible" if verdict.reason == "implausible" else (crash or verdict.reason)
        return f"{reason}{': ' + str(detail) if detail else ''}"
    if verdict.action == "remeasure":
        return "beyond noise: confirming" if verdict.reason == "confirming a keep" else "within noise: confirming"
    return verdict.reason if verdict.reason in ROW_REASONS else None

"""The steps between a finished training run and its row: trusted evaluation, the keep rule, checks.

``finished`` → (``evaluate`` set) a second fresh sandbox runs the evaluator from the commit's files,
with the run's output read-only and the eval data visible; its metric replaces the run's own
(``claimed``) → phase ``evaluated``. Then ``judge.decide`` on the journal's measurements and σ; a
would-be keep runs the ``check`` command → phase ``checked``. Each step journals its result, so a
crash in between repeats only the step it interrupted (the evaluator and checks read only files).
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from autoresearch.journal.store import Experiment, JournalState
from autoresearch.judging import judge, noise, rebase, research
from autoresearch.runners.base import RunKind, RunOutcome

if TYPE_CHECKING:
    from autoresearch.coordinator.phases import Phases

log = structlog.get_logger("autoresearch.judge")

CLAIM_GAP = 0.05
"""A claimed metric more than 5 % away from the evaluated one is flagged in the journal and the report."""


def read_metric(log_path: Path, stdout_path: Path, name: str, source: str) -> float | None:
    """The last metric line from stdout (or the whole log when configured, or when the runner kept no
    separate stdout)."""
    path = stdout_path if source == "stdout" and stdout_path.exists() else log_path
    if source == "stdout" and not stdout_path.exists():
        log.warning("metric.no_stdout_file", path=str(stdout_path), fallback=str(log_path))
    text = path.read_text(errors="replace") if path.exists() else ""
    return judge.last_value(text, name)


def policy(phases: Phases) -> judge.Policy:
    s = phases.settings
    return noise.policy(s.noise, s.direction, s.metric_bounds, s.max_memory_gb, s.simplicity.max_added_lines)


@dataclass
class AfterRun:
    phases: Phases
    cancel: threading.Event | None = None

    def evaluate(self, exp: Experiment) -> bool:
        """Run the trusted evaluator on a finished, successful run; journal ``evaluated``. False if the
        daemon was told to stop meanwhile: nothing is journaled, and a restart evaluates again."""
        p, s = self.phases, self.phases.settings
        assert s.evaluate is not None
        outcome, metric = self._side_run(exp, "evaluate", s.evaluate, s.evaluate_timeout)
        if outcome.cause == "interrupted":
            return False
        fields: dict[str, Any] = {"metric": metric, "eval_cause": outcome.cause,
                                  "eval_wall_s": round(outcome.wall_s, 3)}
        if not outcome.ok:
            fields["cause"] = f"eval:{outcome.cause}"
        elif metric is None:
            fields["cause"] = f"eval:no finite {s.metric}"
        claimed = exp.claimed
        if metric is not None:
            gap = None if claimed is None else abs(float(claimed) - metric) / max(abs(metric), 1e-12)
            fields["claim_gap"] = None if gap is None else round(gap, 6)
            fields["claim_flag"] = gap is not None and gap > CLAIM_GAP
            if fields["claim_flag"]:
                log.warning("metric.claim_gap", n=exp.n, claimed=claimed, evaluated=metric, gap=gap)
        p.journal.phase(exp.n, "evaluated", **fields)
        return True

    def check(self, exp: Experiment) -> bool:
        """Run the repo's checks on a would-be keep; journal ``checked`` (False: stopped, as above)."""
        s = self.phases.settings
        assert s.check is not None
        outcome, _ = self._side_run(exp, "check", s.check, s.check_timeout)
        if outcome.cause == "interrupted":
            return False
        self.phases.journal.phase(exp.n, "checked", checks_ok=outcome.ok, check_cause=outcome.cause)
        return True

    def _side_run(
        self, exp: Experiment, kind: RunKind, command: str, timeout: float
    ) -> tuple[RunOutcome, float | None]:
        p, s = self.phases, self.phases.settings
        commit = exp.commit
        run_dir = p.session.run_dir(exp.n)
        log_path, stdout_path = run_dir / f"{kind}.log", run_dir / f"{kind}.stdout"
        log_path.unlink(missing_ok=True)
        stdout_path.unlink(missing_ok=True)
        with p.snapshot(f"{exp.n}-{kind}", commit) as snap:
            spec = p.spec(exp.n, kind, command, log_path, commit, self.cancel, snap, seed=exp.seed)
            # The training run's output (read-only at /output for evaluate and check), eval data for evaluate only.
            spec = dataclasses.replace(spec, budget=timeout, grace=0.0, stdout_path=stdout_path,
                                       output_dir=p.output_dir(exp.n),
                                       eval_data=p.eval_data() if kind == "evaluate" else None,
                                       env={**spec.env, **p.mount_env(exp.n, kind)})
            outcome = p.runner.run(spec, lambda _handle: None)
        metric = read_metric(log_path, stdout_path, s.metric, s.metric_source) if outcome.ok else None
        log.info(f"{kind}.finished", n=exp.n, cause=outcome.cause, metric=metric, wall_s=round(outcome.wall_s, 3))
        return outcome, metric

    def verdict(self, state: JournalState, exp: Experiment) -> judge.Verdict:
        """The keep rule on what the journal holds, plus ``exp`` itself: git's facts gathered here, the
        decision made by the pure core (``research.verdict``)."""
        p = self.phases
        runs = noise.runs_of(state)
        run = noise.run_of(exp)
        if exp.adopted:  # someone else's commit on the branch: the new base unless it crashed
            verdict = research.verdict([], run, research.Facts(), policy(p))
            if verdict.action == "crash":
                return verdict
            return judge.Verdict("keep", "adopted", mean=verdict.mean)
        best_exp = state.best()
        first = state.experiments.get(exp.confirm_of, exp) if exp.confirm_of is not None else exp
        merges = None
        if (best_exp is not None and exp.for_candidate is None and run.metric is not None
                and rebase.overtaken(first, best_exp)):
            # Overtaken (another lane kept meanwhile): does the change re-apply onto the best?
            merges = rebase.merged_onto(p.settings, p.workspace, first, best_exp) is not None
        facts = research.Facts(lines=self._lines(exp.commit),
                               best_lines=self._lines(best_exp.commit) if best_exp is not None else 0,
                               checks_ok=exp.checks_ok, merges=merges)
        return research.verdict(runs, run, facts, policy(p))

    def _lines(self, commit: str) -> int:
        if not commit:
            return 0
        return len(self.phases.workspace.read(commit, self.phases.settings.target).splitlines())

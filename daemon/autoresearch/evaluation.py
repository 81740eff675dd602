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

from autoresearch import judge, noise, rebase
from autoresearch.journal import Experiment, JournalState
from autoresearch.runners.base import RunKind, RunOutcome

if TYPE_CHECKING:
    from autoresearch.phases import Phases

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
    return judge.Policy(direction=s.direction, z=s.noise.z, max_repeats=s.noise.max_repeats,
                        bounds=s.metric_bounds, max_memory_gb=s.max_memory_gb,
                        max_added_lines=s.simplicity.max_added_lines, confirm_keeps=s.noise.confirm_keeps)


@dataclass
class Steps:
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
        """The keep rule on what the journal holds before ``exp``, plus ``exp`` itself."""
        p = self.phases
        commit = exp.commit
        cause = exp.cause
        earlier = noise.measurements(state, commit, upto=exp.n)
        own = () if exp.metric is None or cause != "ok" else (exp.metric,)
        best_exp = state.best()  # ``exp`` is not recorded yet: the best of this instant (with lanes, too)
        lineage: dict[str, Any] = {}
        if best_exp is not None and rebase.overtaken(exp, best_exp) and own:
            merged = rebase.merged_onto(p.settings, p.workspace, exp, best_exp)
            lineage = {"parent": exp.parent, "parent_metrics": noise.measurements(state, exp.parent),
                       "merges": merged is not None}
        run = judge.Candidate(
            commit=commit, cause=cause, metrics=earlier + own, memory_gb=exp.memory_gb,
            lines=self._lines(commit), checks_ok=exp.checks_ok, confirmation=exp.confirm_of is not None, **lineage,
        )
        best = None
        if best_exp is not None:
            best_commit = best_exp.commit
            first = exp.n if exp.confirm_of is None else exp.confirm_of
            # Runs of the best since this candidate's first run, if any: measured under today's load.
            values = (noise.measurements(state, best_commit, upto=exp.n, since=first)
                      or noise.measurements(state, best_commit, upto=exp.n) or (float(best_exp.metric or 0.0),))
            best = judge.Best(commit=best_commit, metrics=values, memory_gb=best_exp.memory_gb,
                              lines=self._lines(best_commit))
        if exp.adopted:  # someone else's commit on the branch: the new base unless it crashed
            verdict = judge.decide(run, None, noise.sigma(state, upto=exp.n), policy(p))
            if verdict.action == "crash":
                return verdict
            return judge.Verdict("keep", "adopted", mean=sum(run.metrics) / len(run.metrics))
        return judge.decide(run, best, noise.sigma(state, upto=exp.n), policy(p))

    def _lines(self, commit: str) -> int:
        if not commit:
            return 0
        return len(self.phases.workspace.read(commit, self.phases.settings.target).splitlines())

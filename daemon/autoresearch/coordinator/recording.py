"""A finished run's way to its row: evaluation and checks as lane jobs (no lock held), then, under the
one writer lock (``Coordinator.lock``), the verdict against the best of that instant, the ``recorded``
record (a rebased experiment journaled first: write-ahead), the branch move and the views.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, cast

import structlog

from autoresearch.coordinator import retention
from autoresearch.coordinator.evaluation import AfterRun
from autoresearch.errors import BaselineCrashed
from autoresearch.git import branchsync
from autoresearch.journal.ledger import clean_description, write_results
from autoresearch.journal.records import ConfirmDropRecord, Recorded, RowStatus
from autoresearch.journal.store import Experiment, JournalState
from autoresearch.judging import judge, noise, rebase, research
from autoresearch.runners.base import log_tail

if TYPE_CHECKING:
    from autoresearch.coordinator.phases import Phases

log = structlog.get_logger("autoresearch.loop")

NOT_THE_SCRIPTS_FAULT = judge.RERUN_CAUSES
"""Causes that are not the experiment's fault: such a baseline is re-run rather than stopping the daemon."""


def record(p: Phases, exp: Experiment, cancel: threading.Event | None = None) -> None:
    """Evaluate (a lane job, no lock held), then judge and record under the one writer lock. A would-be
    keep is checked first, also outside the lock; the verdict is then taken again against the best of
    that instant."""
    s, steps, n = p.settings, AfterRun(p, cancel), exp.n
    if exp.phase == "finished" and s.evaluate and exp.cause == "ok" and not steps.evaluate(exp):
        return  # stopped mid-evaluation: left at `finished`, evaluated again on restart
    while True:
        with p.coordinator.lock:
            state = p.journal.load()  # one state for the verdict and its record: nothing is written between
            exp = state.experiments[n]
            verdict = steps.verdict(state, exp)
            checkable = verdict.action == "keep" and verdict.reason not in ("first", "repeat", "adopted")
            if not (checkable and s.check and exp.phase != "checked"):
                _record(p, state, exp, verdict)
                return
        if not steps.check(exp):
            return  # stopped mid-check: left as it was, checked again on restart


def _record(p: Phases, state: JournalState, exp: Experiment, verdict: judge.Verdict) -> None:
    """The row of a judged run, its branch move and the views (under the writer lock; ``state`` as judged)."""
    s = p.settings
    best = state.best()
    status = verdict.status
    cause = exp.cause
    reason = _row_reason(verdict, judge.crash_reason(cause, exp.metric, s.metric), exp.detail)
    description = clean_description(exp.description)
    if reason:
        description = clean_description(f"{description} [{reason}]")
    rebased_as = None
    if verdict.action == "rebase" and best is not None:
        merged = rebase.merged_onto(s, p.workspace, exp, best)
        assert merged is not None  # decide saw the same merge succeed
        rebased_as = p.coordinator.rebase(exp, best, merged)  # before this row: write-ahead
    if verdict.reason in LINEAGES:  # another lane's keep landed while it trained
        note = f"rebased as #{rebased_as}" if rebased_as is not None else verdict.reason
        description = clean_description(f"{exp.description} [{note}]")
    new_best = exp if status == "keep" else best
    best_metric = verdict.mean if status == "keep" else noise.best_mean(state)
    p.journal.append(Recorded(
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
    _explain_given_up(p)
    # Written ahead: a kill before the move is finished by the next start (branchsync moves it forward).
    branchsync.sync(p.workspace, p.session.branch, p.journal.load())
    state = p.journal.load()
    write_results(p.session.repo, state, s.metric)
    retention.prune_outputs(state, s.keep_outputs, p.output_dir)
    _log_finished(p, exp, status, description)
    if exp.baseline and status == "crash" and cause not in NOT_THE_SCRIPTS_FAULT:
        tail = log_tail(p.session.run_dir(exp.n) / "run.log", 2000)
        what = f"the adopted commit {exp.commit[:7]}" if exp.adopted else f"the baseline (unchanged {s.target})"
        raise BaselineCrashed(
            f"{what} crashed [{reason}]; fix it and commit it on "
            f"{p.session.branch}, then run again. Log: {p.session.run_dir(exp.n) / 'run.log'}\n{tail}"
        )


def _explain_given_up(p: Phases) -> None:
    """Journal why a confirmation will not come (once per candidate): its parent keeps failing."""
    for candidate in noise.given_up(p.journal.load()):
        reason = f"gave up: the parent's fresh runs failed {research.MAX_FAILED_REFERENCES} times"
        p.journal.append(ConfirmDropRecord(type="confirm_drop", candidate=candidate, reason=reason))
        log.warning("judge.confirmation_dropped", candidate=candidate, reason=reason)


def _log_finished(p: Phases, exp: Experiment, status: str, description: str) -> None:
    exp = p.load(exp.n)
    log_fn = log.warning if status == "crash" else log.info
    log_fn(
        "experiment.finished",
        n=exp.n,
        commit=exp.commit[:7],
        metric_name=p.settings.metric,
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

"""The noise estimate and the measurements, read from the journal's fold (pure; no I/O).

σ is the pooled standard deviation of every commit measured more than once: the baseline's
``noise.repeats`` extra runs and every confirmation pair. A commit's measurements are the metrics of
its recorded, non-crashed runs (a re-run of a commit is a new experiment with the same commit).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from autoresearch.journal import Experiment, JournalState
from autoresearch.judge import RERUN_CAUSES

REMEASURE = "remeasure"


def measured(exp: Experiment) -> bool:
    return exp.done and exp.status != "crash" and exp.metric is not None and exp.committed is not None


def measurements(state: JournalState, commit: str, upto: int | None = None, since: int = -1) -> tuple[float, ...]:
    """Metrics of ``commit``'s recorded runs, in order (only experiments after ``since`` and before ``upto``)."""
    return tuple(
        float(e.metric)  # type: ignore[arg-type]
        for e in state.recorded()
        if since < e.n and (upto is None or e.n < upto) and measured(e) and e.commit == commit
    )


def sigma(state: JournalState, upto: int | None = None) -> float:
    """Pooled σ over commits measured at least twice; 0.0 when there is no pair yet."""
    groups: dict[str, list[float]] = defaultdict(list)
    for e in state.recorded():
        if (upto is None or e.n < upto) and measured(e):
            groups[e.commit].append(float(e.metric))  # type: ignore[arg-type]
    squares, dof = 0.0, 0
    for values in groups.values():
        if len(values) > 1:
            mean = sum(values) / len(values)
            squares += sum((v - mean) ** 2 for v in values)
            dof += len(values) - 1
    return math.sqrt(squares / dof) if dof else 0.0


def best_mean(state: JournalState) -> float | None:
    """The best's metric: the mean of its commit's measurements."""
    best = state.best()
    if best is None:
        return None
    values = measurements(state, best.commit)
    return sum(values) / len(values) if values else best.metric


@dataclass(frozen=True)
class Remeasure:
    """A run the judge wants before any new proposal."""

    commit: str
    description: str
    of: int
    """The experiment whose commit is measured again."""
    for_candidate: int | None = None
    """A fresh run of the best, made for the candidate first measured at this experiment."""


def next_remeasure(state: JournalState, repeats: int) -> Remeasure | None:
    """The baseline's missing repeats first, then a confirmation the last verdict asked for."""
    done = state.recorded()
    if not done:
        return None
    best = state.best()
    base = next((e for e in done if e.baseline and e.status == "keep"), None)
    if base is not None and best is not None and best.commit == base.commit:
        commit = base.commit
        tries = [e for e in done if e.committed is not None and e.commit == commit and e.cause not in RERUN_CAUSES]
        if len(tries) < 1 + repeats:
            return Remeasure(commit=commit, description="confirm: baseline", of=base.n)
    last = done[-1]
    fresh_for = last.for_candidate
    if fresh_for is not None:  # the best was just run again for a candidate: now the candidate
        if last.finished is not None and last.cause in RERUN_CAUSES:
            return _fresh_best(state, fresh_for)
        return _confirm(state, state.experiments[fresh_for])
    if last.decision == REMEASURE and last.committed is not None:
        first = _first(last)
        tried = [e for e in done if e.n > first and e.for_candidate == first]
        if best is not None and not tried:
            return _fresh_best(state, first)
        return _confirm(state, last)
    return None


def _confirm(state: JournalState, exp: Experiment) -> Remeasure:
    of = _first(exp)
    original = state.experiments.get(of, exp)
    return Remeasure(commit=exp.commit, description=f"confirm: {original.description}", of=of)


def _fresh_best(state: JournalState, first: int) -> Remeasure:
    best = state.best()
    assert best is not None
    of = _first(best)
    original = state.experiments.get(of, best)
    name = original.description
    return Remeasure(commit=best.commit, description=name if name.startswith("confirm:") else
                     f"confirm: {name}", of=of, for_candidate=first)


def _first(exp: Experiment) -> int:
    """The experiment that first measured ``exp``'s commit (itself, unless it is a confirmation)."""
    return exp.n if exp.confirm_of is None else exp.confirm_of

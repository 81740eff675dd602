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
    return exp.done and exp.status != "crash" and exp.metric is not None and bool(exp.get("commit"))


def measurements(state: JournalState, commit: str, upto: int | None = None) -> tuple[float, ...]:
    """Metrics of ``commit``'s recorded runs, in order (only experiments before ``upto`` if given)."""
    return tuple(
        float(e.metric)  # type: ignore[arg-type]
        for e in state.recorded()
        if (upto is None or e.n < upto) and measured(e) and e.get("commit") == commit
    )


def sigma(state: JournalState, upto: int | None = None) -> float:
    """Pooled σ over commits measured at least twice; 0.0 when there is no pair yet."""
    groups: dict[str, list[float]] = defaultdict(list)
    for e in state.recorded():
        if (upto is None or e.n < upto) and measured(e):
            groups[str(e.get("commit"))].append(float(e.metric))  # type: ignore[arg-type]
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
    values = measurements(state, str(best.get("commit")))
    return sum(values) / len(values) if values else best.metric


@dataclass(frozen=True)
class Remeasure:
    """A run the judge wants before any new proposal."""

    commit: str
    description: str
    of: int
    """The experiment whose commit is measured again."""


def next_remeasure(state: JournalState, repeats: int) -> Remeasure | None:
    """The baseline's missing repeats first, then a confirmation the last verdict asked for."""
    done = state.recorded()
    if not done:
        return None
    best = state.best()
    base = next((e for e in done if e.get("baseline") and e.status == "keep"), None)
    if base is not None and best is not None and best.get("commit") == base.get("commit"):
        commit = str(base.get("commit"))
        tries = [e for e in done if e.get("commit") == commit and e.get("cause") not in RERUN_CAUSES]
        if len(tries) < 1 + repeats:
            return Remeasure(commit=commit, description="confirm: baseline", of=base.n)
    last = done[-1]
    if last.get("decision") == REMEASURE and last.get("commit"):
        of = int(last.get("confirm_of", last.n))
        original = state.experiments.get(of, last)
        return Remeasure(commit=str(last.get("commit")), description=f"confirm: {original.get('description')}", of=of)
    return None

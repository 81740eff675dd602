"""The journal's fold as the decision core's facts (``research.Run``), and the noise figures read from it.

σ is the pooled standard deviation of every commit measured more than once (the baseline's
``noise.repeats`` extra runs and every confirmation pair), robust to one outlying run (``stats``). A
commit's measurements are the metrics of its recorded, non-crashed runs (a re-run of a commit is a new
experiment with the same commit).
"""

from __future__ import annotations

from typing import Literal

from autoresearch.journal.store import Experiment, JournalState
from autoresearch.judging import research
from autoresearch.judging.decision import Policy
from autoresearch.judging.research import Measure
from autoresearch.judging.stats import Noise
from autoresearch.ops.config import NoiseSettings


def policy(noise: NoiseSettings, direction: Literal["min", "max"], bounds: tuple[float, float],
           max_memory_gb: float | None = None, max_added_lines: int | None = None) -> Policy:
    """The keep rule's policy from the ``[noise]`` settings (the daemon's and ``bench/yield.py``'s one way)."""
    return Policy(direction=direction, z=noise.z, max_repeats=noise.max_repeats, bounds=bounds,
                  max_memory_gb=max_memory_gb, max_added_lines=max_added_lines, confirm_keeps=noise.confirm_keeps,
                  alpha=noise.alpha, futility=noise.futility)


def run_of(exp: Experiment) -> research.Run:
    """One experiment as the core sees it."""
    commit = exp.committed.commit if exp.committed is not None else (exp.measure_commit or "")
    finished = exp.finished is not None
    return research.Run(
        n=exp.n, commit=commit, metric=exp.metric if finished and exp.committed is not None else None,
        done=exp.done, decision=exp.decision, status=exp.status if exp.done else None, reason=exp.reason,
        cause=exp.cause if finished else "ok", parent=exp.parent, lane=exp.lane, baseline=exp.baseline,
        confirm_of=exp.confirm_of, for_candidate=exp.for_candidate, description=exp.description,
        memory_gb=exp.memory_gb if finished else 0.0,
    )


def runs_of(state: JournalState) -> list[research.Run]:
    """Recorded runs in completion order, then the open ones (by n)."""
    return [run_of(e) for e in state.completed()] + [run_of(e) for e in state.open()]


def measurements(state: JournalState, commit: str, upto: int | None = None, since: int = -1) -> tuple[float, ...]:
    """Metrics of ``commit``'s recorded runs, in order (only experiments after ``since`` and before ``upto``)."""
    return research.measurements(sorted(runs_of(state), key=lambda r: r.n), commit, upto, since)


def estimate(state: JournalState, upto: int | None = None) -> Noise:
    """σ with its degrees of freedom (and the one outlier it left out, if any)."""
    return research.noise(runs_of(state), upto)


def sigma(state: JournalState, upto: int | None = None) -> float:
    """Pooled σ over commits measured at least twice; 0.0 when there is no pair yet."""
    return estimate(state, upto).sigma


def best_mean(state: JournalState) -> float | None:
    """The best's metric: the mean of its commit's measurements."""
    best = state.best()
    if best is None:
        return None
    values = measurements(state, best.commit)
    return sum(values) / len(values) if values else best.metric


def pending(state: JournalState, repeats: int) -> tuple[Measure, ...]:
    """Every measurement the judge wants now, in order (``research.pending``)."""
    return research.pending(runs_of(state), repeats)


def calibrating(state: JournalState, repeats: int) -> bool:
    """No change may start yet: the baseline's repeats are owed or running (``research.calibrating``)."""
    return research.calibrating(runs_of(state), repeats)


def given_up(state: JournalState) -> list[int]:
    """Candidates whose confirmation the judge gave up and that no ``confirm_drop`` explains yet."""
    return [n for n in research.given_up(runs_of(state)) if n not in state.confirm_drops]

"""The research's decision core over plain facts (pure): runs in, verdicts and pending measurements out.

The daemon's shell turns its journal into ``Run`` facts (``noise.runs_of``) and git facts (line
counts, whether a change merges onto the best) into ``Facts``; ``bench/yield.py`` makes the same facts
from a simulation. Both then ask the same two questions:

- ``verdict(runs, run, facts, policy)``: what a finished run means (keep, discard, crash, remeasure,
  rebase), by ``decision.decide`` on the measurements the runs hold;
- ``pending(runs, repeats)``: the measurements the judge still wants, in order (the baseline's
  repeats, then one per candidate being confirmed: a fresh run of its parent, then the candidate on
  the lane that ran that fresh run). Several may be pending at once; none is lost when other lanes'
  rows land in between, because the queue is read from every candidate, not from the last row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoresearch.judging.decision import RERUN_CAUSES, Best, Candidate, Policy, Verdict, decide
from autoresearch.judging.stats import Noise, pooled_sigma

MAX_FAILED_REFERENCES = 3
"""Fresh runs of a candidate's parent that may fail (by the script's fault: a kill does not count) before
the judge stops asking for more."""


@dataclass(frozen=True)
class Run:
    """One run as the core sees it (recorded runs in completion order, then the open ones)."""

    n: int
    commit: str
    metric: float | None
    """The run's metric; None: it crashed, or it has not finished."""
    done: bool = True
    """Recorded (its verdict is in); False: in flight, or left half-done by a crash."""
    decision: str | None = None
    """The recorded verdict's action (keep, discard, crash, remeasure, rebase)."""
    status: str | None = None
    reason: str | None = None
    cause: str = "ok"
    parent: str | None = None
    lane: int | None = None
    baseline: bool = False
    confirm_of: int | None = None
    """A re-measurement of this experiment's commit."""
    for_candidate: int | None = None
    """A fresh run of the candidate's parent, made to judge it (the first half of a pair)."""
    description: str = ""
    memory_gb: float = 0.0

    @property
    def measured(self) -> bool:
        return self.done and self.status != "crash" and self.metric is not None


@dataclass(frozen=True)
class Facts:
    """What the shell knows about a run beyond its measurements (git, checks)."""

    lines: int = 0
    best_lines: int = 0
    checks_ok: bool | None = None
    merges: bool | None = None
    """The change merges cleanly onto the best (asked only when its parent is not the best)."""


@dataclass(frozen=True)
class Measure:
    """A run the judge wants: ``commit`` measured again."""

    commit: str
    description: str
    of: int
    """The experiment whose commit is measured again."""
    for_candidate: int | None = None
    """A fresh run of the candidate's parent, made for the candidate first measured at this experiment."""
    lane: int | None = None
    """The lane that must run it (the second run of a confirmation pair); None: any lane."""
    parent: str | None = None
    """The candidate's parent (a confirmation stays on the parent its change was made on)."""


def best(runs: Sequence[Run]) -> Run | None:
    """The last keep recorded: keeps are strictly improving, so it is the best."""
    keeps = [r for r in runs if r.done and r.status == "keep"]
    return keeps[-1] if keeps else None


def measurements(runs: Sequence[Run], commit: str, upto: int | None = None, since: int = -1) -> tuple[float, ...]:
    return tuple(float(r.metric) for r in runs  # type: ignore[arg-type]
                 if since < r.n and (upto is None or r.n < upto) and r.measured and r.commit == commit)


def noise(runs: Sequence[Run], upto: int | None = None) -> Noise:
    """Pooled σ (robust to one outlier) over commits measured at least twice."""
    groups: dict[str, list[float]] = {}
    for r in sorted(runs, key=lambda r: r.n):
        if (upto is None or r.n < upto) and r.measured:
            groups.setdefault(r.commit, []).append(float(r.metric))  # type: ignore[arg-type]
    return pooled_sigma(list(groups.values()))


def pair_up(refs: Sequence[Run], confs: Sequence[Run]) -> tuple[list[tuple[Run, Run]], Run | None]:
    """Confirmation pairs: each candidate run with the latest unpaired, measured fresh run of its parent
    before it; and the fresh run still waiting for its candidate run, if any."""
    events = sorted([*refs, *confs], key=lambda r: r.n)
    ref_ns = {r.n for r in refs}
    pairs: list[tuple[Run, Run]] = []
    waiting: Run | None = None
    for r in events:
        if r.n in ref_ns:
            waiting = r if r.measured else waiting
        elif waiting is not None and r.metric is not None and r.cause == "ok":
            pairs.append((waiting, r))
            waiting = None
    return pairs, waiting


def reference(runs: Sequence[Run], commit: str, upto: int | None = None) -> tuple[float, ...]:
    """``commit``'s measurements as the level new candidates are compared with: without the run that
    selected it (it was kept because that run was low: the winner's curse) once it has others."""
    selecting = {r.n for r in runs if r.commit == commit and r.measured and not r.baseline
                 and r.confirm_of is None and r.for_candidate is None}
    values = tuple(float(r.metric) for r in sorted(runs, key=lambda r: r.n)  # type: ignore[arg-type]
                   if r.measured and r.commit == commit and (upto is None or r.n < upto) and r.n not in selecting)
    return values or measurements(runs, commit, upto)


def _anchor(runs: Sequence[Run]) -> float | None:
    gains = [r for r in runs if r.done and r.status == "keep" and r.reason not in ("simplification", "less memory")]
    if not gains:
        return None
    values = measurements(runs, gains[-1].commit)
    return sum(values) / len(values) if values else None


def verdict(runs: Sequence[Run], run: Run, facts: Facts, policy: Policy, fixed: Noise | None = None) -> Verdict:
    """The keep rule on ``run`` (finished, not recorded yet) with what the recorded runs hold (σ from
    them, unless ``fixed`` gives it: the bench's rules that measure the noise once, or never)."""
    done = [r for r in runs if r.done and r.n != run.n]
    top = best(done)
    est = noise(done, upto=run.n) if fixed is None else fixed
    if run.for_candidate is not None and top is not None and run.commit != top.commit:
        if run.metric is None or run.cause != "ok":
            return Verdict("crash", run.cause if run.cause != "ok" else "no metric")
        return Verdict("discard", "reference", mean=run.metric)  # half a pair: no verdict of its own
    by_n = {r.n: r for r in runs}
    first = by_n.get(run.confirm_of, run) if run.confirm_of is not None else run
    confs = [r for r in done if r.confirm_of == first.n and r.for_candidate is None and r.n < run.n]
    confs += [run] if run is not first else []
    own = [r.metric for r in [first, *confs] if r.metric is not None and r.cause == "ok"
           and (r is run or r.measured)]
    refs = [r for r in done if r.for_candidate == first.n]
    pairs, _ = pair_up(refs, confs)
    parent = None if first.baseline else first.parent
    candidate = Candidate(
        commit=run.commit, cause=run.cause, metrics=tuple(own) if run.metric is not None and run.cause == "ok" else (),
        memory_gb=run.memory_gb, lines=facts.lines, checks_ok=facts.checks_ok, confirmation=run.confirm_of is not None,
        parent=parent, parent_metrics=measurements(done, parent) if parent else (), merges=facts.merges,
        pairs=tuple((float(a.metric), float(b.metric)) for a, b in pairs),  # type: ignore[arg-type]
        noise_due=est.dof == 0 and any(not r.done and r.n != run.n and (r.confirm_of is not None or r.baseline)
                                       for r in runs),
    )
    ref: Best | None = None
    if top is not None:
        values = reference(done, top.commit, upto=run.n) or ((top.metric,) if top.metric is not None else (0.0,))
        ref = Best(commit=top.commit, metrics=values, memory_gb=top.memory_gb, lines=facts.best_lines,
                   anchor=_anchor(done))
    return decide(candidate, ref, est, policy)


def pending(runs: Sequence[Run], repeats: int) -> tuple[Measure, ...]:
    """The measurements the judge wants, in order: the baseline's missing repeats, then for each
    candidate being confirmed (oldest first) its next run, unless one of its runs is in flight."""
    done = [r for r in runs if r.done]
    top = best(done)
    if top is None:
        return ()
    out: list[Measure] = []
    base = next((r for r in done if r.baseline and r.status == "keep"), None)
    if base is not None and top.commit == base.commit:
        tries = [r for r in runs if r.commit == base.commit and r.cause not in RERUN_CAUSES
                 and (r.baseline or r.confirm_of == base.n)]
        out += [Measure(base.commit, "confirm: baseline", of=base.n)] * max(0, 1 + repeats - len(tries))
    for first in sorted(_confirming(runs), key=lambda r: r.n):
        refs = [r for r in done if r.for_candidate == first.n]
        if _parent_failed(refs):
            continue  # its parent no longer runs: no pair can be made (``given_up``)
        confs = [r for r in done if r.confirm_of == first.n and r.for_candidate is None]
        _, waiting = pair_up(refs, confs)
        name = f"confirm: {first.description}"
        if waiting is not None:
            out.append(Measure(first.commit, name, of=first.n, lane=waiting.lane, parent=first.parent))
        elif first.parent is not None:
            origin = next((r for r in runs if r.commit == first.parent and r.confirm_of is None
                           and r.for_candidate is None), None)
            label = name if origin is None else f"confirm: {origin.description.removeprefix('confirm: ')}"
            out.append(Measure(first.parent, label, of=first.n if origin is None else origin.n,
                               for_candidate=first.n, parent=first.parent))
    return tuple(out)


def calibrating(runs: Sequence[Run], repeats: int) -> bool:
    """The best's baseline repeats are still owed or running: σ is not measured yet, so no new change may
    start (with lanes, one that finished first would be judged with no noise estimate at all)."""
    top = best([r for r in runs if r.done])
    if top is None or repeats == 0:
        return False
    owed = any(m.commit == top.commit and m.for_candidate is None for m in pending(runs, repeats))
    return owed or any(not r.done and r.commit == top.commit and r.confirm_of is not None and r.for_candidate is None
                       for r in runs)


def given_up(runs: Sequence[Run]) -> list[int]:
    """Candidates the judge stopped confirming: their parent's fresh runs failed ``MAX_FAILED_REFERENCES``
    times (the shell journals why, once: ``confirm_drop``)."""
    done = [r for r in runs if r.done]
    return [first.n for first in _confirming(runs) if _parent_failed([r for r in done if r.for_candidate == first.n])]


def _parent_failed(refs: Sequence[Run]) -> bool:
    return sum(1 for r in refs if not r.measured and r.cause not in RERUN_CAUSES) >= MAX_FAILED_REFERENCES


def _confirming(runs: Sequence[Run]) -> list[Run]:
    """Candidates whose latest verdict asked for another run and that have no run in flight."""
    by_n = {r.n: r for r in runs}
    latest: dict[int, Run] = {}
    for r in runs:  # completion order: the last recorded run of each change wins
        if r.done and r.for_candidate is None and not r.baseline:
            key = r.confirm_of if r.confirm_of is not None else r.n
            latest[key] = r
    busy = {r.confirm_of for r in runs if not r.done} | {r.for_candidate for r in runs if not r.done}
    return [by_n[k] for k, r in latest.items()
            if r.decision == "remeasure" and k not in busy and k in by_n and not by_n[k].baseline]

"""``results.tsv``: a view of the journal in the seed's exact format, rewritten atomically after
every recorded experiment, so it can never hold a doubled or half-written row.

One row per change (``rows``): the baseline and each proposed change, written once its verdict is
final, in verdict order. The judge's re-measurements (baseline repeats, confirmations, fresh runs of
the best) are runs of the journal, not rows: a row's metric is the mean the judge used for its verdict.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from autoresearch.journal.store import Experiment, JournalState
from autoresearch.ops.safetext import one_line

RESULTS_FILE = "results.tsv"


def header(metric: str) -> str:
    return f"commit\t{metric}\tmemory_gb\tstatus\tdescription\n"


def clean_description(text: str) -> str:
    """One line, no tabs, no control or format characters: the TSV must stay parseable and safe to
    show whatever the agent wrote."""
    return one_line(text)


@dataclass(frozen=True)
class Row:
    """One change's line: the baseline or a proposal, with every run the judge made of it."""

    n: int
    """The experiment that first measured the change (its number in the journal and the run logs)."""
    verdict_n: int
    """The experiment whose verdict made the row final (``n`` unless it was confirmed)."""
    commit: str
    status: str
    """keep, discard or crash."""
    metric: float | None
    """The mean the judge used for the verdict (None for a crash)."""
    memory_gb: float
    description: str
    runs: int
    """The measurements behind ``metric``."""
    baseline: bool = False
    confidence: float | None = None
    """A keep's gain over the best before it, in σ."""
    best_metric: float | None = None
    """The best's level after this row (its mean)."""


def rows(state: JournalState) -> list[Row]:
    """The rows of results.tsv: one per change whose verdict is final, in verdict order."""
    groups: dict[int, list[Experiment]] = {}
    done = state.completed()
    change = change_keys(state)
    for exp in done:
        if exp.for_candidate is None:  # a fresh run of the best, made to judge a candidate: not a row
            groups.setdefault(change[exp.n], []).append(exp)
    waiting = _awaiting_verdict(state, done, change)
    position = {n: i for i, n in enumerate(state.completion)}
    ordered = sorted((g for key, g in groups.items() if key not in waiting),
                     key=lambda g: position[_verdict_of(g).n])
    return [_row(g, given_up=change[g[0].n] in state.confirm_drops) for g in ordered]


def change_keys(state: JournalState) -> dict[int, int]:
    """Each experiment's change: the number of the experiment that first measured it (a repeat or a
    confirmation belongs to the change it re-measures; every baseline run to the first baseline)."""
    keys: dict[int, int] = {}
    base: int | None = None
    for exp in state.ordered():  # a confirmation always comes after what it confirms
        if exp.adopted:  # someone's commit, measured as the new base: a change of its own, not a baseline run
            keys[exp.n] = exp.n
        elif exp.baseline:
            base = exp.n if base is None else base
            keys[exp.n] = base
        elif exp.confirm_of is not None and exp.confirm_of in keys:
            keys[exp.n] = keys[exp.confirm_of]
        else:
            keys[exp.n] = exp.n
    return keys


def _awaiting_verdict(state: JournalState, done: list[Experiment], change: dict[int, int]) -> set[int]:
    """Changes whose latest verdict asked for another run that is still to come or already in flight
    (the rule of ``research.pending``: every change's own latest run, not the last row of all)."""
    waiting = {change[e.n] for e in state.open() if e.confirm_of is not None and e.for_candidate is None}
    waiting |= {e.for_candidate for e in state.open() if e.for_candidate is not None}
    latest: dict[int, Experiment] = {}
    for exp in done:  # completion order: the last one of each change wins
        if exp.for_candidate is None:
            latest[change[exp.n]] = exp
    waiting |= {key for key, exp in latest.items() if exp.decision == "remeasure"}
    waiting -= set(state.confirm_drops)  # the judge gave up its confirmation: its last verdict is its row
    # The baseline's verdict (keep) is final at its first run: its repeats only refine its mean.
    return {k for k in waiting if k in state.experiments and not state.experiments[k].baseline}


def _verdict_of(group: list[Experiment]) -> Experiment:
    """The baseline's verdict is its first measured run (repeats only refine its mean); a proposal's
    is its last run."""
    if group[0].baseline:
        return next((e for e in group if e.status != "crash"), group[-1])
    return group[-1]


def _row(group: list[Experiment], given_up: bool = False) -> Row:
    first, verdict = group[0], _verdict_of(group)
    measured = [float(e.metric) for e in group if e.status != "crash" and e.metric is not None]
    status = verdict.status
    if first.baseline:
        runs, metric = len(measured), (sum(measured) / len(measured) if measured else None)
    else:
        upto = [float(e.metric) for e in group[: group.index(verdict) + 1]
                if e.status != "crash" and e.metric is not None]
        runs = len(upto)
        metric = verdict.mean if verdict.mean is not None else (sum(upto) / runs if upto else None)
    if status == "crash":
        metric = None
    # A confirmation the judge gave up (``confirm_drop``) ends on a "confirming" verdict: the row says so.
    description = first.description + (" [confirmation given up]" if given_up else _bracket(verdict))
    if runs > 1:
        description += f" (mean of {runs} runs)"
    return Row(n=first.n, verdict_n=verdict.n, commit=first.commit, status=status, metric=metric,
               memory_gb=verdict.memory_gb if verdict.finished is not None else 0.0,
               description=clean_description(description), runs=runs, baseline=first.baseline,
               confidence=verdict.confidence, best_metric=verdict.best_metric)


def _bracket(exp: Experiment) -> str:
    """The ``[reason]`` the verdict's record added to its description (none for a plain keep/discard)."""
    full, plain = clean_description(exp.row_description), clean_description(exp.description)
    if full.startswith(plain) and full != plain:
        return " " + full[len(plain):].strip()
    return ""


def format_row(row: Row) -> str:
    metric = 0.0 if row.status == "crash" or row.metric is None else row.metric
    memory = 0.0 if row.status == "crash" else row.memory_gb
    return f"{row.commit[:7]}\t{_cell(metric, 6)}\t{_cell(memory, 1)}\t{row.status}\t{row.description}\n"


CELL_LIMIT = 1e9
"""Numbers beyond this are shown at the limit: a cell never grows past 18 characters."""


def _cell(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        value = 0.0
    return f"{max(-CELL_LIMIT, min(CELL_LIMIT, value)):.{decimals}f}"


def render(state: JournalState, metric: str) -> str:
    return header(metric) + "".join(format_row(r) for r in rows(state))


def write_atomic(path: Path, text: str) -> None:
    """Write a temp file beside ``path``, fsync it, rename over: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are for the user's other tools too
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(repo: Path, state: JournalState, metric: str) -> Path:
    path = repo / RESULTS_FILE
    write_atomic(path, render(state, metric))
    return path


def remove_stale_temps(repo: Path) -> None:
    """Temp files a crash left mid-``write_atomic`` (they would show up as untracked files)."""
    for stale in repo.glob(f".{RESULTS_FILE}.*"):
        stale.unlink(missing_ok=True)


def parse_results(text: str) -> list[dict[str, str]]:
    """Rows of a results.tsv as dicts keyed by its header (used by status, report and tests)."""
    lines = text.splitlines()
    if not lines:
        return []
    keys = lines[0].split("\t")
    return [dict(zip(keys, line.split("\t"), strict=True)) for line in lines[1:] if line]

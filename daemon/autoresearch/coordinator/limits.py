"""The configured limits (``[limits]``): when no new experiment may start, and when the agent may not be
asked again. Pure functions of the journal's state."""

from __future__ import annotations

import datetime as dt

from autoresearch.journal.ledger import change_keys, rows
from autoresearch.journal.status import gpu_hours, total_cost
from autoresearch.journal.store import JournalState
from autoresearch.ops.config import Limits


def reached(limits: Limits, state: JournalState, now: dt.datetime, spend: bool = True) -> str | None:
    """Why no new experiment may start, or None. ``spend=False`` leaves the agent's cost out: a proposal
    already paid for still runs (as in the serial loop, where a proposal made is run)."""
    if limits.max_experiments is not None and len(rows(state)) >= limits.max_experiments:
        return f"max_experiments reached ({limits.max_experiments})"
    if limits.max_runs is not None and len(state.completed()) >= limits.max_runs:
        return f"max_runs reached ({limits.max_runs} runs)"
    if limits.max_gpu_hours is not None and (hours := gpu_hours(state)) >= limits.max_gpu_hours:
        return f"max_gpu_hours reached ({hours:.3f} >= {limits.max_gpu_hours})"
    if spend and limits.max_cost_usd is not None and (cost := total_cost(state)) >= limits.max_cost_usd:
        return f"max_cost_usd reached (${cost:.2f} >= ${limits.max_cost_usd:.2f})"
    if limits.stop_at is not None:
        stop_at = limits.stop_at if limits.stop_at.tzinfo else limits.stop_at.astimezone()
        if now >= stop_at:
            return f"stop_at reached ({stop_at.isoformat()})"
    return None


def changes_started(state: JournalState) -> int:
    """Changes measured or being measured (the baseline counts once; the judge's re-measurements not)."""
    keys = change_keys(state)
    return len({keys[e.n] for e in state.experiments.values() if e.for_candidate is None})


def count_reached(limits: Limits, state: JournalState) -> bool:
    """The changes started fill ``max_experiments``: no new change may start (its pending
    re-measurements still run, so that it gets its verdict)."""
    cap = limits.max_experiments
    return cap is not None and changes_started(state) >= cap


def runs_reached(limits: Limits, state: JournalState) -> bool:
    """The recorded plus the open runs fill ``max_runs``: no run of any kind may start."""
    cap = limits.max_runs
    return cap is not None and len(state.completed()) + len(state.open()) >= cap


def room(limits: Limits, state: JournalState) -> int | None:
    """How many more changes the count limits allow (None: no count limit)."""
    left = [cap - used for cap, used in ((limits.max_experiments, changes_started(state)),
                                         (limits.max_runs, len(state.completed()) + len(state.open())))
            if cap is not None]
    return min(left) if left else None


def cost_ahead(limits: Limits, state: JournalState, drafting: int) -> bool:
    """True when the ``drafting`` proposals in progress could take the spend to ``max_cost_usd`` (each at
    the mean cost of a proposal so far): no further conversation starts until they are in."""
    cap = limits.max_cost_usd
    if cap is None:
        return False
    usages = state.all_usage()
    spent = total_cost(state)
    mean = spent / len(usages) if usages else 0.0
    return spent + mean * drafting >= cap

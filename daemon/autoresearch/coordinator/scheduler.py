"""What a free lane does next, and how many proposals to draft: pure functions of the journal's state.

Priority, highest first:
1. open experiments no lane works on: a rebased commit or a confirmation the judge queued, or what a
   crash left proposed/committed (oldest first);
2. the baseline, when there is no best yet (one at a time: nothing else can start before it);
3. a run the judge wants (a baseline repeat, a confirmation): the first item of its queue of pending
   measurements (``noise.pending``) that this lane may run (an item with a ``lane`` runs there
   only, so a confirmation pair is measured on one lane);
4. drafted proposals, oldest first;
5. nothing: the lane waits for the drafter.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from autoresearch.journal.store import JournalState
from autoresearch.judging.research import Measure


@dataclass(frozen=True)
class Job:
    kind: Literal["open", "baseline", "remeasure", "draft"]
    n: int | None = None
    """The open experiment to drive (kind ``open``)."""
    draft: int | None = None
    """The draft to take (kind ``draft``)."""
    measure: Measure | None = None
    """The judge's run to start (kind ``remeasure``)."""


def next_job(
    state: JournalState, busy: Collection[int], new_allowed: bool, measurements: Sequence[Measure] = (),
    changes: bool = True, lane: int | None = None,
) -> Job | None:
    """The head of the queue for the free lane ``lane``. ``busy``: experiments lanes work on now;
    ``new_allowed``: False once a limit is reached (open experiments are still driven to their row);
    ``measurements``: the judge's pending runs; ``changes``: False once ``max_experiments`` changes
    started (only the judge's runs that finish them may still start)."""
    waiting = [e.n for e in state.open() if e.n not in busy]
    if waiting:
        return Job("open", n=waiting[0])
    if not new_allowed:
        return None
    if state.best() is None:
        return None if busy or not changes else Job("baseline")
    measure = next((m for m in measurements if m.lane is None or m.lane == lane), None)
    if measure is not None:
        return Job("remeasure", measure=measure)
    if state.drafts and changes:
        return Job("draft", draft=min(state.drafts))
    return None


@dataclass(frozen=True)
class DraftNeed:
    lanes: int
    idle_lanes: int
    ahead: int
    """Drafts to keep queued per lane while lanes train (0: draft only for a free lane)."""
    drafting: int
    """Drafts the agent works on now."""
    concurrency: int
    room: int | None
    """Experiments the limits still allow (None: no count limit)."""


def drafts_to_start(state: JournalState, need: DraftNeed) -> int:
    """How many new drafts to ask the agent for now."""
    if state.best() is None:
        return 0  # nothing to edit yet: the baseline comes first
    target = need.lanes * need.ahead if need.ahead else need.idle_lanes
    want = target - len(state.drafts) - need.drafting
    if need.room is not None:
        want = min(want, need.room - len(state.drafts) - need.drafting)
    return max(0, min(want, need.concurrency - need.drafting))

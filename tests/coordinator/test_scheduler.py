"""What a free lane takes next: open experiments (rebased, left by a crash), then the baseline, then drafts."""

from __future__ import annotations

from pathlib import Path

from autoresearch.coordinator.scheduler import DraftNeed, Job, drafts_to_start, next_job
from autoresearch.journal.store import Journal, JournalState
from autoresearch.judging.research import Measure


def _draft(j: Journal, i: int) -> None:
    j.append({"type": "draft", "id": i, "parent": "p", "description": f"d{i}", "content": "x"})


def _exp(j: Journal, n: int, done: bool, status: str = "keep") -> None:
    j.phase(n, "proposed", parent="p", description=f"e{n}", content="x", when="2026-01-01T00:00:00Z")
    if done:
        j.phase(n, "committed", commit=f"c{n}")
        j.phase(n, "finished", cause="ok", metric=1.0)
        j.phase(n, "recorded", status=status)


def _state(tmp_path: Path, setup: list[tuple[str, int, bool]]) -> JournalState:
    j = Journal(tmp_path / "j.jsonl")
    for kind, n, done in setup:
        _draft(j, n) if kind == "draft" else _exp(j, n, done)
    return j.load()


def test_priority_open_then_baseline_then_drafts(tmp_path: Path) -> None:
    empty = JournalState()
    assert next_job(empty, busy=(), new_allowed=True) == Job("baseline")
    assert next_job(empty, busy={0}, new_allowed=True) is None  # the baseline runs alone
    state = _state(tmp_path, [("exp", 0, True), ("draft", 0, False), ("draft", 1, False), ("exp", 1, False)])
    assert next_job(state, busy=(), new_allowed=True) == Job("open", n=1)  # e.g. a rebased commit, first
    assert next_job(state, busy={1}, new_allowed=True) == Job("draft", draft=0)  # then the oldest draft
    assert next_job(state, busy={1}, new_allowed=False) is None  # a limit: no new experiment
    assert next_job(state, busy=(), new_allowed=False) == Job("open", n=1)  # an open one still runs


def test_drafts_to_start_keeps_one_ready_per_lane(tmp_path: Path) -> None:
    state = _state(tmp_path, [("exp", 0, True)])
    need = DraftNeed(lanes=4, idle_lanes=0, ahead=1, drafting=0, concurrency=2, room=None)
    assert drafts_to_start(state, need) == 2  # four wanted, two conversations at a time
    assert drafts_to_start(state, DraftNeed(4, 0, 1, 2, 2, None)) == 0
    assert drafts_to_start(state, DraftNeed(4, 1, 0, 0, 4, None)) == 1  # no pipelining: one per free lane
    assert drafts_to_start(state, DraftNeed(4, 0, 1, 0, 4, room=1)) == 1  # never past max_experiments
    assert drafts_to_start(JournalState(), DraftNeed(4, 4, 1, 0, 4, None)) == 0  # no best: baseline first


def test_the_judges_queue_comes_before_drafts_and_an_item_runs_only_on_its_lane(tmp_path: Path) -> None:
    """Several pending measurements at once (one per candidate): a free lane takes the first it may run;
    an item pinned to a lane (a confirmation pair) is left for that lane, which takes nothing else first."""
    state = _state(tmp_path, [("exp", 0, True), ("draft", 0, False)])
    pinned = Measure("c" * 40, "confirm: a", of=3, lane=1)
    anywhere = Measure("d" * 40, "confirm: b", of=4)
    queue = [pinned, anywhere]
    assert next_job(state, (), True, queue, lane=1) == Job("remeasure", measure=pinned)
    assert next_job(state, (), True, queue, lane=0) == Job("remeasure", measure=anywhere)
    assert next_job(state, (), True, [pinned], lane=0) == Job("draft", draft=0)  # not its lane: a draft
    assert next_job(state, (), True, [pinned], changes=False, lane=0) is None  # and no change may start
    assert next_job(state, (), True, [pinned], changes=False, lane=1) == Job("remeasure", measure=pinned)
    assert next_job(state, (), False, queue, lane=1) is None  # a limit stops the judge's runs too

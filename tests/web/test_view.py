"""The page's data without a server: limits with their ETA at the session's pace, rows joined to
their runs, the agent named by the journal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from autoresearch.journal.store import Journal
from autoresearch.ops.config import Limits, Settings
from autoresearch.runners.lanes import Lane
from autoresearch.web.view import snapshot

START = dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.UTC)


def journal_with(tmp_path: Path, metrics: list[float | None]) -> Journal:
    """One recorded experiment per metric (None: a crash), one every 10 minutes from START."""
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append({"type": "session", "tag": "v"})
    for n, metric in enumerate(metrics):
        at = (START + dt.timedelta(minutes=10 * n)).isoformat()
        lane = journal.for_lane(0)
        lane.proposed(n, content="x", parent="p" * 40, description=f"change {n} <b>", agent="anthropic" if n else
                      "baseline", usage={"cost_usd": 0.5}, at=at)
        lane.phase(n, "committed", commit=f"{n:07d}" + "c" * 33, at=at)
        lane.phase(n, "running", handle={}, at=at)
        lane.phase(n, "finished", cause="ok" if metric else "exit:1", metric=metric, wall_s=300.0, at=at)
        status = "crash" if metric is None else "keep" if n == 0 else "discard"
        lane.phase(n, "recorded", status=status, row_description=f"change {n} <b>", decision=status, at=at)
    return journal


def test_limits_are_shown_with_when_they_will_be_reached(tmp_path: Path) -> None:
    state = journal_with(tmp_path, [1.0, 0.9, None]).load()
    now = START + dt.timedelta(minutes=30)  # 3 experiments in 30 minutes
    settings = Settings(limits=Limits(max_experiments=9, max_cost_usd=3.0, stop_at=START + dt.timedelta(hours=8)))
    limits = {lim["name"]: lim for lim in snapshot(state, settings, [Lane(0)], now)["limits"]}
    assert limits["experiments"]["used"] == 3 and limits["experiments"]["limit"] == 9
    assert dt.datetime.fromisoformat(limits["experiments"]["eta"]) == now + dt.timedelta(minutes=60)
    assert limits["agent cost (USD)"]["used"] == pytest.approx(1.5)
    assert dt.datetime.fromisoformat(limits["agent cost (USD)"]["eta"]) == now + dt.timedelta(minutes=30)
    assert limits["stop at"]["eta"] == (START + dt.timedelta(hours=8)).isoformat() and not limits["stop at"]["reached"]
    done = snapshot(state, Settings(limits=Limits(max_experiments=3)), [Lane(0)], now)["limits"][0]
    assert done["reached"] and done["eta"] == now.isoformat()


def test_rows_carry_results_tsv_cells_and_the_agent_comes_from_the_journal(tmp_path: Path) -> None:
    view = snapshot(journal_with(tmp_path, [1.0, 0.9, None]).load(), Settings(agent="offline"), [Lane(0)], START)
    assert [(r["n"], r["status"], r["metric"]) for r in view["rows"]] == [(0, "keep", 1.0), (1, "discard", 0.9),
                                                                          (2, "crash", 0.0)]
    assert view["rows"][1]["description"] == "change 1 <b>"  # raw text: the page sets it as text
    assert [m["n"] for m in view["rows"][1]["measurements"]] == [1]
    assert view["agent"] == "anthropic"
    assert view["summary"]["cost_usd"] == pytest.approx(1.5)


def test_a_stream_sends_only_the_rows_a_client_lacks() -> None:
    from autoresearch.web.app import _rows_delta

    assert _rows_delta(["1", "2"], ["1", "2"]) is None
    assert json.loads(_rows_delta(["1", "2"], ["1", "2", "3"]) or "") == {"from": 2, "rows": [3]}
    assert json.loads(_rows_delta([], ["1"]) or "") == {"from": 0, "rows": [1]}
    assert json.loads(_rows_delta(["1", "2", "3"], ["1", "4", "3"]) or "") == {"from": 1, "rows": [4, 3]}
    assert json.loads(_rows_delta(["1", "2"], ["1"]) or "") == {"from": 1, "rows": []}  # a new, shorter session

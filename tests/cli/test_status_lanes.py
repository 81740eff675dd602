"""status with lanes: one line per lane (GPU, experiment, description, elapsed/budget), from the journal."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.console import Console

from autoresearch.cli.render import lane_line, status_table
from autoresearch.journal.status import summarize
from autoresearch.journal.store import Journal
from autoresearch.runners.lanes import Lane

T0 = "2026-11-26T10:00:00.000+00:00"
NOW = dt.datetime(2026, 11, 26, 10, 2, 0, tzinfo=dt.UTC)
LANES = [Lane(0, ("0",), (0,)), Lane(1, ("1",), (1,)), Lane(2, ("2",), (2,))]


def journal(tmp_path: Path) -> Journal:
    """Baseline done; #1 training in lane 1 for 120 s; #2 just proposed in lane 0; lane 2 idle."""
    j = Journal(tmp_path / "journal.jsonl")
    j.append({"type": "session", "tag": "t"})
    for n, lane, description in ((0, 0, "baseline"), (1, 1, "lr 0.04"), (2, 0, "wider mlp")):
        j.phase(n, "proposed", parent="p" * 40, description=description, content="X = 1\n", at=T0,
                when=T0, lane=lane, baseline=n == 0)
    j.phase(0, "committed", commit="a" * 40, lane=0)
    j.phase(0, "finished", cause="ok", metric=1.0, lane=0)
    j.phase(0, "recorded", status="keep", lane=0)
    j.phase(1, "committed", commit="b" * 40, lane=1, at=T0)
    j.phase(1, "running", handle={"kind": "fake"}, lane=1, at=T0)
    return j


def test_one_entry_per_lane(tmp_path: Path) -> None:
    lanes = summarize(journal(tmp_path).load(), "min", now=NOW, lanes=LANES, budget=300.0)["lanes"]
    assert [(e["lane"], e["where"], e["n"], e["phase"], e["description"]) for e in lanes] == [
        (0, "gpu 0", 2, "proposed", "wider mlp"),
        (1, "gpu 1", 1, "running", "lr 0.04"),
        (2, "gpu 2", None, None, None),
    ]
    assert lanes[1]["elapsed_s"] == 120.0 and lanes[1]["budget_s"] == 300.0
    assert lane_line(lanes[1]) == "gpu 1  #1 running 120s/300s  lr 0.04"
    assert lane_line(lanes[0]) == "gpu 0  #2 proposed 120s  wider mlp"
    assert lane_line(lanes[2]) == "gpu 2  idle"


def test_the_table_shows_lanes_and_a_single_lane_keeps_the_running_row(tmp_path: Path) -> None:
    state = journal(tmp_path).load()
    console = Console(width=120, record=True)
    console.print(status_table({**summarize(state, "min", now=NOW, lanes=LANES, budget=300.0), "metric": "m"}))
    text = console.export_text()
    assert "lane 1 " in text and "gpu 1  #1 running 120s/300s  lr 0.04" in text and "gpu 2  idle" in text
    assert "running " not in text.replace("#1 running", ""), "the lanes replace the single running row"
    single = Journal(tmp_path / "single.jsonl")  # written before lanes: no lane fields
    single.phase(0, "proposed", parent="p" * 40, description="baseline", content="X = 1\n", at=T0, when=T0)
    console = Console(width=120, record=True)
    console.print(status_table({**summarize(single.load(), "min", now=NOW), "metric": "m"}))
    text = console.export_text()
    assert "lane 0" not in text and "#0 proposed, 120s in this phase: baseline" in text


def test_a_lane_no_longer_planned_still_shows_its_run(tmp_path: Path) -> None:
    lanes = summarize(journal(tmp_path).load(), "min", now=NOW, lanes=[Lane(0)], budget=300.0)["lanes"]
    assert [(e["lane"], e["where"], e["n"]) for e in lanes] == [(0, "all", 2), (1, "all", 1)]

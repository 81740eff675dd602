from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from autoresearch.errors import JournalError, JournalReplaced
from autoresearch.journal.ledger import clean_description, parse_results
from autoresearch.journal.records import StopRecord
from autoresearch.journal.store import Journal
from autoresearch.judging.judge import last_value, memory_gb


def _propose(j: Journal, n: int, description: str = "d", **fields: object) -> None:
    j.phase(n, "proposed", parent="p" * 40, description=description, content="X = 1\n",
            when="2026-11-26T00:00:00+00:00", **fields)


def test_fold_and_pending(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.append({"type": "session", "tag": "x"})
    _propose(j, 0, "baseline", baseline=True)
    j.phase(0, "committed", commit="abc")
    j.phase(0, "finished", cause="ok", metric=1.0)
    j.phase(0, "recorded", status="keep")
    _propose(j, 1, "b")
    state = j.load()
    assert state.tag == "x"
    best = state.best()
    assert best is not None and best.commit == "abc" and best.baseline and best.metric == 1.0
    pending = state.pending()
    assert pending is not None and pending.n == 1 and pending.description == "b"
    assert state.next_n() == 2


def test_torn_tail_is_skipped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    _propose(j, 0)
    with path.open("a") as fh:
        fh.write('{"type": "phase", "n": 0, "phase": "comm')
    assert j.load().experiments[0].phase == "proposed"
    j.repair_tail()
    j.phase(0, "committed", commit="c")
    assert j.load().experiments[0].phase == "committed"


def test_metric_parsing_edge_cases() -> None:
    assert last_value("val_bpb: 2.0\nval_bpb: 1.5\n", "val_bpb") == 1.5
    assert last_value("val_bpb:          1.25\n", "val_bpb") == 1.25
    assert last_value("  val_bpb: 1.0\nxval_bpb: 1.0\n", "val_bpb") is None
    assert last_value("val_bpb: nan\n", "val_bpb") is None
    assert last_value("val_bpb: inf\n", "val_bpb") is None
    assert last_value("val_bpb: -inf\n", "val_bpb") is None
    assert last_value("val_bpb: 1.0\nval_bpb: oops\n", "val_bpb") is None
    assert last_value("", "val_bpb") is None
    assert last_value("acc(top1): 0.5\n", "acc(top1)") == 0.5


def test_memory_fallbacks() -> None:
    assert memory_gb(3.0, "peak_vram_mb: 1024") == 3.0
    assert memory_gb(None, "peak_vram_mb: 2048.0\n") == 2.0
    assert memory_gb(None, "") == 0.0


def test_descriptions_and_parse() -> None:
    assert clean_description("a\tb\nc  d") == "a b c d"
    rows = parse_results("commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc1234\t1.000000\t0.0\tkeep\tbaseline\n")
    assert rows == [{"commit": "abc1234", "val_bpb": "1.000000", "memory_gb": "0.0", "status": "keep",
                     "description": "baseline"}]


def test_incremental_load_matches_a_fresh_fold(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    _propose(j, 0)
    first = j.load()
    assert first.experiments[0].phase == "proposed"
    j.phase(0, "committed", commit="c")
    j.append({"type": "agent", "state": {"notes": "n"}})
    with path.open("a") as fh:
        fh.write('{"type": "phase", "n": 0, "pha')  # torn tail: not folded, not skipped over
    again = j.load()
    assert again.experiments[0].phase == "committed" and again.agent_state == {"notes": "n"}
    j.repair_tail()
    j.phase(0, "running", handle={})
    assert j.load().experiments[0].phase == "running"
    assert Journal(path).load().experiments[0] == j.load().experiments[0]


def test_a_replaced_journal_is_an_error_never_a_silent_reread(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    _propose(j, 0)
    _propose(j, 1)
    assert sorted(j.load().experiments) == [0, 1]
    path.rename(tmp_path / "archived.jsonl")  # what init's archiving did under a running daemon
    with pytest.raises(JournalReplaced, match="was removed"):
        j.load()
    _propose(Journal(path), 5)
    with pytest.raises(JournalReplaced, match="replaced by another file") as info:
        j.load()
    assert info.value.exit_code == 2


def test_a_shrunk_journal_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    _propose(j, 0)
    _propose(j, 1)
    j.load()
    with path.open("r+b") as fh:
        fh.truncate(10)
    with pytest.raises(JournalReplaced, match="shrank"):
        j.load()


def test_journal_of_the_landed_version_loads_typed() -> None:
    """A journal written by the version before typed records (content shortened, otherwise verbatim)."""
    state = Journal(Path(__file__).parent.parent / "data" / "journal_landed.jsonl").load()
    assert state.tag == "t" and state.agent_state == {"notes": "n1"}
    done = state.completed()
    assert [(e.n, e.status, e.metric) for e in done] == [(0, "keep", 2.0), (1, "keep", 1.5), (2, "crash", None)]
    first = done[1]
    assert first.commit.startswith("06ed941") and first.parent.startswith("8f010be") and not first.baseline
    assert first.meta == {"params": {"LR": 0.7}} and first.usage.cost_usd == 0.01 and first.usage.input_tokens == 100
    assert done[2].cause == "exit:1" and done[2].row_description == "crashy [exit:1]" and done[2].exit_code == 1
    assert [r.error for r in state.skipped] == ["bad edit"] and state.skipped[0].usage.cost_usd == 0.02
    assert state.stops[0].reason == "max_experiments reached (3)"
    pending = state.pending()
    assert pending is not None and pending.phase == "finished" and pending.cause == "interrupted"
    assert pending.handle == {"kind": "process", "pgid": 4242, "start_ticks": 99}
    assert pending.training_seconds is None and pending.detail == "daemon died during the run"


def _raw(j: Journal, record: dict[str, object]) -> None:
    """A line as another version (or a hand edit) wrote it: not through ``append``'s validation."""
    with j.path.open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def test_a_record_missing_a_required_field_is_an_error(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    _raw(j, {"type": "phase", "n": 0, "phase": "proposed", "description": "no parent, content or date"})
    with pytest.raises(JournalError, match=r"line 1: invalid phase record \(parent: Field required\)"):
        j.load()


def test_a_field_of_a_phase_not_reached_is_an_error_not_none(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    _propose(j, 0)
    exp = j.load().experiments[0]
    with pytest.raises(JournalError, match="experiment 0 is proposed: its journal has no committed record"):
        _ = exp.commit
    with pytest.raises(JournalError, match="no finished record"):
        _ = exp.cause
    assert exp.metric is None


def test_unknown_record_types_are_skipped_and_extra_phase_keys_kept(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    _raw(j, {"type": "phase", "n": 0, "phase": "proposed", "parent": "p" * 40, "description": "d",
             "content": "X = 1\n", "when": "2026-11-26T00:00:00+00:00", "placement": "a"})
    _raw(j, {"type": "hologram", "x": 1})
    _raw(j, {"type": "phase", "n": 0, "phase": "committed", "commit": "abc", "seeds": [1, 2]})
    _raw(j, {"type": "stop", "reason": "signal", "legacy_key": True})  # other records ignore theirs
    with capture_logs() as logs:
        state = j.load()
    assert [e["event"] for e in logs] == ["journal.unknown_record"] and logs[0]["type"] == "hologram"
    assert state.experiments[0].commit == "abc" and state.experiments[0].extra == {"placement": "a", "seeds": [1, 2]}


def test_failed_proposals_in_a_row_and_waits_are_folded(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.append({"type": "usage", "n": 0, "error": "e1", "usage": {"cost_usd": 0.5}})
    _propose(j, 0)
    j.append({"type": "usage", "n": 1, "error": "e2", "usage": {}})
    j.append({"type": "usage", "n": 1, "error": "e3", "usage": {}})
    j.append({"type": "wait", "what": "engine", "reason": "Docker engine unreachable"})
    state = j.load()
    assert [r.error for r in state.failed_in_a_row] == ["e2", "e3"] and len(state.skipped) == 3
    assert state.waiting is not None and state.waiting.what == "engine"
    j.append({"type": "wait", "what": None})
    assert j.load().waiting is None


def test_results_cells_have_six_decimals_and_bounded_width(tmp_path: Path) -> None:
    from autoresearch.journal.ledger import format_row

    def row(metric: float, memory: float) -> list[str]:
        j = Journal(tmp_path / f"j{len(list(tmp_path.iterdir()))}.jsonl")
        _propose(j, 0)
        j.phase(0, "committed", commit="abcdef0123")
        j.phase(0, "finished", cause="ok", metric=metric, memory_gb=memory)
        j.phase(0, "recorded", status="discard", row_description="x")
        return format_row(j.load().experiments[0]).rstrip("\n").split("\t")

    assert row(1e-300, 1e300)[1:3] == ["0.000000", "1000000000.0"]
    assert row(-1e308, float("inf"))[1:3] == ["-1000000000.000000", "0.0"]
    assert row(1.2345678, 2.0)[1:3] == ["1.234568", "2.0"]


def test_writes_are_strict_before_anything_reaches_the_file(tmp_path: Path) -> None:
    """Typed writes: an extra key, a missing field, a wrong type or an unknown type raises on the writer's
    side and leaves the file as it was (before, such a record was written and failed only at the next
    load, exit 2 on the daemon's own journal)."""
    j = Journal(tmp_path / "j.jsonl")
    _propose(j, 0)
    before = j.path.read_bytes()
    with pytest.raises(ValueError, match="extra_key: Extra inputs are not permitted"):
        j.phase(0, "committed", commit="abc", extra_key=1)
    with pytest.raises(ValueError, match="parent: Field required"):
        j.phase(1, "proposed", description="d", content="x", when="now")
    with pytest.raises(ValueError, match="metric: Input should be a valid number"):
        j.phase(0, "finished", cause="ok", metric="fast")
    with pytest.raises(ValueError, match="reason: Field required"):
        j.append({"type": "stop"})
    with pytest.raises(ValueError, match="no record model for type='hologram'"):
        j.append({"type": "hologram"})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        StopRecord(type="stop", reason="signal", exit_kode=2)  # type: ignore[call-arg]
    assert j.path.read_bytes() == before
    j.append(StopRecord(type="stop", reason="signal"))
    assert j.load().stops[-1].reason == "signal"

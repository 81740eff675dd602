from __future__ import annotations

from pathlib import Path

from autoresearch.journal import Journal
from autoresearch.judge import last_value, memory_gb
from autoresearch.ledger import clean_description, parse_results


def test_fold_and_pending(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    j.append({"type": "session", "tag": "x"})
    j.phase(0, "proposed", description="baseline")
    j.phase(0, "committed", commit="abc")
    j.phase(0, "finished", cause="ok", metric=1.0)
    j.phase(0, "recorded", status="keep")
    j.phase(1, "proposed", description="b")
    state = j.load()
    assert state.session["tag"] == "x"
    assert state.best() is not None and state.best().get("commit") == "abc"  # type: ignore[union-attr]
    assert state.pending() is not None and state.pending().n == 1  # type: ignore[union-attr]
    assert state.next_n() == 2


def test_torn_tail_is_skipped_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.phase(0, "proposed", description="a")
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
    j.phase(0, "proposed", description="a")
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
    assert Journal(path).load().experiments[0].data == j.load().experiments[0].data


def test_replaced_or_shrunk_journal_is_folded_again(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path)
    j.phase(0, "proposed", description="a")
    j.phase(1, "proposed", description="b")
    assert sorted(j.load().experiments) == [0, 1]
    path.unlink()
    Journal(path).phase(5, "proposed", description="new")
    assert sorted(j.load().experiments) == [5]


def test_results_cells_have_six_decimals_and_bounded_width() -> None:
    from autoresearch.journal import Experiment
    from autoresearch.ledger import format_row

    def row(metric: float, memory: float) -> list[str]:
        exp = Experiment(n=0, phase="recorded", data={"status": "discard", "metric": metric, "memory_gb": memory,
                                                      "commit": "abcdef0123", "description": "x"})
        return format_row(exp).rstrip("\n").split("\t")

    assert row(1e-300, 1e300)[1:3] == ["0.000000", "1000000000.0"]
    assert row(-1e308, float("inf"))[1:3] == ["-1000000000.000000", "0.0"]
    assert row(1.2345678, 2.0)[1:3] == ["1.234568", "2.0"]

"""report.md: the figures, the top-hits ranking and the crash list, on each kind of ledger."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from autoresearch.report import summary
from autoresearch.report.data import load_ledger
from tests.report.report_samples import ALL_CRASHES, MAXED, MIXED, Exp

NOW = dt.datetime(2025, 1, 2, 7, 30, tzinfo=dt.UTC)


def report(repo: Path, metric: str = "val_bpb", direction: str = "min") -> str:
    return summary.render(load_ledger(repo, metric, direction), now=NOW)  # type: ignore[arg-type]


def figures(text: str) -> dict[str, str]:
    """The Summary table as {figure: value}."""
    section = text.split("## Summary\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("| ").split(" | ", 1) for line in section.splitlines() if line.startswith("| ")]
    return dict(rows[1:])  # type: ignore[arg-type]  # skip the header


def table_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][2:]  # header, rule
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]


def test_mixed_ledger_figures(ledger_repo: Callable[..., Path]) -> None:
    text = report(ledger_repo(MIXED, skipped_costs=[0.5]))
    assert text.startswith("# autoresearch report\n")
    assert "9 experiments, 3 kept improvements. Metric `val_bpb` (lower is better; self-reported by the runs)." in text
    assert "![progress](progress.png)" in text
    fig = figures(text)
    assert fig["Experiments"] == "9"
    assert fig["Baseline"] == "1.000000 (#0)"
    assert fig["Best"] == "0.945000 (#7, 07abcde: longer warmup)"
    assert fig["Improvement"] == "0.055000 (5.50%) over 3 kept improvements"
    assert fig["Kept"] == "4 of 9 (44.4%)"
    assert fig["Discarded"] == "3 of 9 (33.3%)"
    assert fig["Crashed"] == "2 of 9 (22.2%)"
    # 9 runs of 300 s; #1 used two GPUs, #4 none (a CPU run counts as one): 3000 s.
    assert fig["GPU-hours"] == "0.83"
    # Nine proposals at $0.25 plus one skipped iteration at $0.50.
    assert fig["Agent cost"] == "$2.75 (9,010 input / 1,805 output tokens)"
    assert "In flight" not in fig


def test_top_hits_are_ranked_by_gain_over_the_previous_keep(ledger_repo: Callable[..., Path]) -> None:
    rows = table_rows(report(ledger_repo(MIXED)), "Top hits")
    assert [(r[0], r[1]) for r in rows] == [("1", "4"), ("2", "2"), ("3", "7")]
    assert rows[0][3:6] == ["0.950000", "+0.040000", "4.04%"]
    assert rows[2][4] == "+0.005000"
    # A pipe in a description is escaped, so the row keeps its columns.
    assert rows[0][6] == "-"  # no confidence: these runs carry no noise estimate
    assert rows[0][7] == "switch to rotary embeddings \\| with a pipe"


def test_crash_list_names_causes_and_the_log_tail(ledger_repo: Callable[..., Path]) -> None:
    rows = table_rows(report(ledger_repo(MIXED)), "Crashes")
    assert [(r[0], r[2], r[3]) for r in rows] == [
        ("3", "exit:1", "double the depth"),
        ("6", "timeout", "a model too big for the budget"),
    ]
    assert rows[0][4] == "RuntimeError: CUDA out of memory"


def test_higher_is_better(ledger_repo: Callable[..., Path]) -> None:
    text = report(ledger_repo(MAXED, metric="accuracy", direction="max"), "accuracy", "max")
    assert "Metric `accuracy` (higher is better; self-reported by the runs)" in text
    fig = figures(text)
    assert fig["Best"].startswith("0.620000 (#3,")
    assert fig["Improvement"] == "0.120000 (24.00%) over 2 kept improvements"
    rows = table_rows(text, "Top hits")
    assert [(r[1], r[4]) for r in rows] == [("3", "+0.070000"), ("1", "+0.050000")]
    assert "No crashes." in text


def test_empty_ledger(repo: Path) -> None:
    text = report(repo)
    assert "0 experiments, 0 kept improvements" in text
    assert "from an empty ledger" in text
    fig = figures(text)
    assert (fig["Baseline"], fig["Best"], fig["Improvement"]) == ("none", "none", "none")
    assert fig["Kept"] == "0"
    assert fig["Agent cost"] == "unknown"
    assert "No kept improvement over the baseline yet." in text
    assert "No crashes." in text


def test_baseline_only_with_an_experiment_in_flight(ledger_repo: Callable[..., Path]) -> None:
    text = report(ledger_repo([Exp("keep", 2.5, "baseline")], pending=Exp("keep", None, "next")))
    fig = figures(text)
    assert fig["Baseline"] == "2.500000 (#0)"
    assert fig["Improvement"] == "0.000000 (0.00%) over 0 kept improvements"
    assert fig["In flight"] == "#1"
    assert fig["Agent cost"].startswith("$0.50 ")  # the proposal in flight was paid for too
    assert "No kept improvement over the baseline yet." in text


def test_all_crashes(ledger_repo: Callable[..., Path]) -> None:
    text = report(ledger_repo(ALL_CRASHES))
    fig = figures(text)
    assert fig["Baseline"] == "none" and fig["Crashed"] == "3 of 3 (100.0%)"
    assert [r[2] for r in table_rows(text, "Crashes")] == ["exit:2", "oom", "signal:9"]


def test_unknown_cost_is_said_so(ledger_repo: Callable[..., Path]) -> None:
    text = report(ledger_repo([Exp("keep", 1.0, "baseline", cost_usd=None)]))
    assert figures(text)["Agent cost"] == "unknown"


def test_results_tsv_alone_still_reports(repo: Path) -> None:
    """A repo with only the seed's results.tsv (no journal): numbered by row, no durations."""
    (repo / "results.tsv").write_text(
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
        "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline\n"
        "b2c3d4e\t0.993200\t44.2\tkeep\tincrease LR to 0.04\n"
        "c3d4e5f\t1.005000\t44.0\tdiscard\tswitch to GeLU activation\n"
        "d4e5f6g\t0.000000\t0.0\tcrash\tdouble model width (OOM)\n"
    )
    text = report(repo)
    assert "from results.tsv" in text
    fig = figures(text)
    assert fig["Best"] == "0.993200 (#1, b2c3d4e: increase LR to 0.04)"
    assert fig["GPU-hours"] == "unknown (no journal)"
    assert table_rows(text, "Crashes")[0][:4] == ["3", "d4e5f6g", "unknown", "double model width (OOM)"]

"""The demo's summary (status table): the gain with its confidence, compute-hours without a GPU, and
how the runs were sandboxed (issue 16, item 5)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from autoresearch.cli.commands import sandbox_line
from autoresearch.cli.render import status_table
from autoresearch.journal.status import summarize
from autoresearch.ops.config import Settings
from tests.loop_fakes import TARGET, fake_loop, ok


def shown(summary: dict) -> str:  # type: ignore[type-arg]
    console = Console(file=io.StringIO(), width=300, color_system=None, record=True)
    console.print(status_table(summary))
    return console.export_text()


def test_the_summary_shows_the_gain_in_sigma_and_compute_hours(tmp_path: Path) -> None:
    runs = [ok(2.0), ok(2.1), ok(1.9), ok(1.5), ok(2.0), ok(1.6)]
    loop = fake_loop(tmp_path, runs, [(TARGET.replace("0.5", "0.4"), "LR 0.4")], noise={"repeats": 2},
                     limits={"max_runs": 6})
    loop.run()
    summary = summarize(loop.journal.load(), "min")
    assert summary["gpu_used"] is False
    imp = summary["improvement"]
    assert imp["absolute"] == 2.0 - 1.55 and imp["sigmas"] == imp["absolute"] / summary["sigma"]
    text = shown({**summary, "sandbox": sandbox_line(Settings(target="train.py"))})
    assert "compute-hours" in text and "gpu-hours" not in text
    assert f"0.450000 (22.50%, {imp['sigmas']:.1f}σ)" in text
    assert "2 (keep 2, discard 0, crash 0)" in text
    assert "6 (4 re-measurements by the judge)" in text
    assert "sandboxed by bubblewrap" in text
    assert "gpu-hours" in shown({**summary, "gpu_used": True})


def test_the_sandbox_line_says_how_runs_were_isolated() -> None:
    assert "bubblewrap" in sandbox_line(Settings(target="t.py"))
    assert sandbox_line(Settings(target="t.py", process={"sandbox": "none"})).startswith("UNSANDBOXED")
    assert "Docker container" in sandbox_line(Settings(target="t.py", runner="docker"))


def test_the_report_says_compute_hours_without_a_gpu(tmp_path: Path) -> None:
    from autoresearch.report.command import render

    loop = fake_loop(tmp_path, [ok(2.0), ok(1.5)], [(TARGET.replace("0.5", "0.4"), "LR 0.4")],
                     limits={"max_runs": 2})
    loop.run()
    render(tmp_path, tmp_path / "report", "val_bpb", "min")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| Compute-hours |" in text and "GPU-hours" not in text

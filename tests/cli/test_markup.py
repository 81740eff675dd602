"""Nothing from a run, an agent or a description is console markup (issue 15, item 7): ``[exit:127]``
and an agent's ``[bold red]...[/]`` show as written in status, the demo's progress lines and the report."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from autoresearch.cli.render import progress_line, status_table
from autoresearch.journal.status import summarize
from autoresearch.report.command import render as render_report
from tests.loop_fakes import TARGET, fake_loop, ok

SNEAKY = "[bold red]LR[/] 0.4 [link=https://example.com]x[/link]"


def shown(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=300, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


def session(tmp_path: Path):  # type: ignore[no-untyped-def]
    loop = fake_loop(tmp_path, [ok(2.0), ("", "exit:127"), ok(1.0)],
                     [(TARGET.replace("0.5", "0.3"), "uv [missing]"), (TARGET.replace("0.5", "0.4"), SNEAKY)],
                     limits={"max_runs": 3}, metric="val_bpb")
    loop.run()
    return loop.journal.load()


def test_status_and_progress_lines_show_brackets_as_text(tmp_path: Path) -> None:
    state = session(tmp_path)
    lines = [shown(progress_line(e, "val_bpb")) for e in state.completed()]
    assert "uv [missing] [exit:127]" in lines[1]
    assert SNEAKY in lines[2]
    summary = summarize(state, "min")
    summary["tag"] = "[blink]t"
    summary["stopped"] = "crashed [exit:127]; fix it"
    table = shown(status_table(summary))
    assert "[exit:127]; fix it" in table and "[blink]t" in table
    assert SNEAKY in table  # the best's description


def test_the_report_keeps_the_brackets(tmp_path: Path) -> None:
    session(tmp_path)
    out = tmp_path / "report"
    render_report(tmp_path, out, "val_bpb", "min")
    text = (out / "report.md").read_text()
    assert "[exit:127]" in text and "LR[/] 0.4" in text

"""``status --watch``: the status redrawn in place every few seconds (lanes, runs in flight, the last
rows of results.tsv) until Ctrl-C. It only reads, like ``status``."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autoresearch.cli.render import status_table
from autoresearch.errors import AutoresearchError

LAST_ROWS = 10


def view(summary: dict[str, Any], last_rows: int = LAST_ROWS) -> RenderableType:
    """The status table, the runs not yet recorded, and the last rows."""
    parts: list[RenderableType] = [status_table(summary)]
    in_flight = [r for r in summary.get("runs") or [] if r.get("status") is None]
    if in_flight:
        runs = Table(title="in flight", title_justify="left")
        for column in ("#", "lane", "phase", "since", "description"):
            runs.add_column(column)
        for r in in_flight:
            runs.add_row(str(r["n"]), str(r["lane"]), str(r["phase"]), _since(r.get("started")),
                         Text(str(r.get("description") or "")))
        parts.append(runs)
    rows = summary.get("rows") or []
    if rows:
        table = Table(title=f"last {min(len(rows), last_rows)} of {len(rows)} rows", title_justify="left")
        for key in rows[0]:
            table.add_column(key)
        for row in rows[-last_rows:]:
            table.add_row(*(Text(str(v)) for v in row.values()))  # Text: an agent's description is no markup
        parts.append(table)
    return Group(*parts)


def _since(started: str | None) -> str:
    if not started:
        return "-"
    seconds = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(started)).total_seconds()
    return f"{seconds:.0f}s"


def watch(
    read: Callable[[], dict[str, Any]], console: Console, interval_s: float, stop: threading.Event,
    frames: int | None = None,
) -> None:
    """Redraw ``view(read())`` every ``interval_s`` until ``stop`` is set (or after ``frames`` redraws).
    A read that fails (the session was archived meanwhile) shows its error and the watch goes on. Not on a
    terminal (a pipe, a file), each frame is printed after the last instead of redrawn."""
    if not console.is_terminal:
        drawn = 0
        while True:
            console.print(_frame(read))
            drawn += 1
            if (frames is not None and drawn >= frames) or stop.wait(interval_s):
                return
    with Live(_frame(read), console=console, auto_refresh=False, transient=False) as live:
        drawn = 1
        while (frames is None or drawn < frames) and not stop.wait(interval_s):
            live.update(_frame(read), refresh=True)
            drawn += 1


def _frame(read: Callable[[], dict[str, Any]]) -> RenderableType:
    stamp = Text(f"{dt.datetime.now().astimezone():%H:%M:%S}  (Ctrl-C to leave)", style="dim")
    try:
        return Group(stamp, view(read()))
    except AutoresearchError as exc:
        return Group(stamp, Text(f"error: {exc}", style="red"))

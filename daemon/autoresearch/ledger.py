"""``results.tsv``: a view of the journal in the seed's exact format, rewritten atomically after
every recorded experiment, so it can never hold a doubled or half-written row."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from autoresearch.journal import Experiment, JournalState
from autoresearch.safetext import one_line

RESULTS_FILE = "results.tsv"


def header(metric: str) -> str:
    return f"commit\t{metric}\tmemory_gb\tstatus\tdescription\n"


def clean_description(text: str) -> str:
    """One line, no tabs, no control or format characters: the TSV must stay parseable and safe to
    show whatever the agent wrote."""
    return one_line(text)


def format_row(exp: Experiment) -> str:
    status = exp.status
    commit = exp.commit[:7]
    if status == "crash" or exp.metric is None:
        metric, memory = 0.0, 0.0
    else:
        metric, memory = exp.metric, exp.memory_gb
    description = clean_description(exp.row_description or exp.description)
    return f"{commit}\t{_cell(metric, 6)}\t{_cell(memory, 1)}\t{status}\t{description}\n"


CELL_LIMIT = 1e9
"""Numbers beyond this are shown at the limit: a cell never grows past 18 characters."""


def _cell(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        value = 0.0
    return f"{max(-CELL_LIMIT, min(CELL_LIMIT, value)):.{decimals}f}"


def render(state: JournalState, metric: str) -> str:
    return header(metric) + "".join(format_row(e) for e in state.recorded())


def write_atomic(path: Path, text: str) -> None:
    """Write a temp file beside ``path``, fsync it, rename over: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; results are for the user's other tools too
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_results(repo: Path, state: JournalState, metric: str) -> Path:
    path = repo / RESULTS_FILE
    write_atomic(path, render(state, metric))
    return path


def remove_stale_temps(repo: Path) -> None:
    """Temp files a crash left mid-``write_atomic`` (they would show up as untracked files)."""
    for stale in repo.glob(f".{RESULTS_FILE}.*"):
        stale.unlink(missing_ok=True)


def parse_results(text: str) -> list[dict[str, str]]:
    """Rows of a results.tsv as dicts keyed by its header (used by status, report and tests)."""
    lines = text.splitlines()
    if not lines:
        return []
    keys = lines[0].split("\t")
    return [dict(zip(keys, line.split("\t"), strict=True)) for line in lines[1:] if line]

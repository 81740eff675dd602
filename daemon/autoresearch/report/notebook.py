"""``analysis.ipynb``: the packaged template with its parameters cell filled in for one repo.

Plain JSON (no nbformat): the notebook extras are optional, writing the file must not need them.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from autoresearch.journal.ledger import RESULTS_FILE, write_atomic
from autoresearch.report.data import JOURNAL_FILE, Direction, state_dir

NOTEBOOK_FILE = "analysis.ipynb"


def template() -> dict[str, Any]:
    text = resources.files("autoresearch.report").joinpath(NOTEBOOK_FILE).read_text(encoding="utf-8")
    notebook: dict[str, Any] = json.loads(text)
    return notebook


def _relative(target: Path, start: Path) -> str:
    """``target`` as seen from the notebook's folder (the kernel's working directory)."""
    try:
        return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return target.resolve().as_posix()


def parameters(repo: Path, out_dir: Path, metric: str, direction: Direction) -> dict[str, str]:
    return {
        "RESULTS": _relative(repo / RESULTS_FILE, out_dir),
        "JOURNAL": _relative(state_dir(repo) / JOURNAL_FILE, out_dir),
        "METRIC": metric,
        "DIRECTION": direction,
    }


def fill(notebook: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """Rewrite each ``NAME = ...`` line of the cell tagged ``parameters`` (papermill's convention)."""
    for cell in notebook["cells"]:
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell["source"]
        lines = "".join(source).splitlines(keepends=True) if isinstance(source, list) else source.splitlines(True)
        for i, line in enumerate(lines):
            name, sep, rest = line.partition(" = ")
            if sep and name in values:
                comment = rest[rest.index("  #") :].rstrip("\n") if "  #" in rest else ""
                newline = "\n" if line.endswith("\n") else ""
                lines[i] = f"{name} = {json.dumps(values[name])}{comment}{newline}"
        cell["source"] = lines
        return notebook
    raise ValueError("the notebook template has no cell tagged 'parameters'")


def write_notebook(
    repo: Path, out_dir: Path, metric: str, direction: Direction, overwrite: bool = False
) -> tuple[Path, bool]:
    """Write the notebook into ``out_dir``; an existing one is left alone (the user may have edited
    it) unless ``overwrite``. Returns the path and whether it was written."""
    path = out_dir / NOTEBOOK_FILE
    if path.exists() and not overwrite:
        return path, False
    notebook = fill(template(), parameters(repo, out_dir, metric, direction))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    path.chmod(0o644)  # write_atomic's temp file is 0600
    return path, True

"""analysis.ipynb: filled in for a repo, then executed headless in a real kernel (nbclient)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autoresearch.report.notebook import NOTEBOOK_FILE, fill, template, write_notebook
from tests.report.report_samples import MAXED, MIXED

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("pandas")
pytest.importorskip("ipykernel")

# Appended before running: the notebook's own figures, as one JSON line the test can read.
PROBE = """
import json
print("PROBE " + json.dumps({
    "total": total, "counts": counts, "improvements": improvements, "baseline": baseline, "best": best,
    "gpu_hours": round(gpu_hours, 4), "cost": cost, "hits": [int(n) for n in hits["n"]],
    "crashes": [[int(n), c] for n, c in zip(crashes["n"], crashes["cause"])],
    "last_lines": list(crashes["last_log_line"]), "runs": [int(n) for n in runs["n"]],
}))
"""


def execute(path: Path) -> tuple[dict[str, Any], Any]:
    """Run every cell with the ``python3`` kernel (ipykernel's own spec) in the notebook's folder."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    probe = json.loads(text.split("PROBE ", 1)[1])
    return probe, nb


def images(nb: Any) -> int:
    return sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {}))


def test_parameters_are_filled_in(tmp_path: Path) -> None:
    nb = fill(template(), {"RESULTS": "../r/results.tsv", "METRIC": "acc", "DIRECTION": "max"})
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    source = "".join(cell["source"])
    assert 'RESULTS = "../r/results.tsv"\n' in source
    assert 'METRIC = "acc"\n' in source
    assert 'DIRECTION = "max"  # "min": lower is better' in source
    assert 'JOURNAL = ".git/autoresearch/journal.jsonl"' in source  # untouched


@pytest.mark.timeout(120)
def test_notebook_reproduces_the_report(ledger_repo: Callable[..., Path]) -> None:
    repo = ledger_repo(MIXED, skipped_costs=[0.5])
    path, written = write_notebook(repo, repo, "val_bpb", "min")
    assert written and path == repo / NOTEBOOK_FILE
    probe, nb = execute(path)
    assert probe["total"] == 9 and probe["improvements"] == 3
    assert probe["counts"] == {"keep": 4, "discard": 3, "crash": 2}
    assert (probe["baseline"], probe["best"]) == (1.0, 0.945)
    assert probe["hits"] == [4, 2, 7]  # the same ranking as report.md
    assert probe["crashes"] == [[3, "exit:1"], [6, "timeout"]]
    assert probe["last_lines"][0] == "RuntimeError: CUDA out of memory"
    assert probe["gpu_hours"] == pytest.approx(3000 / 3600, abs=1e-4)
    assert probe["cost"] == pytest.approx(2.75)
    assert images(nb) == 1


@pytest.mark.timeout(120)
def test_notebook_elsewhere_on_a_results_only_max_ledger(ledger_repo: Callable[..., Path], tmp_path: Path) -> None:
    """Written outside the repo (paths relative to it), with no journal: numbered from results.tsv."""
    repo = ledger_repo(MAXED, metric="accuracy", direction="max")
    (repo / ".git" / "autoresearch" / "journal.jsonl").unlink()
    out = tmp_path / "analysis"
    path, _ = write_notebook(repo, out, "accuracy", "max")
    probe, nb = execute(path)
    assert probe["runs"] == [0, 1, 2, 3] and probe["improvements"] == 2
    assert (probe["baseline"], probe["best"]) == (0.5, 0.62)
    assert probe["hits"] == [3, 1]
    assert probe["cost"] is None
    assert images(nb) == 1


@pytest.mark.timeout(120)
def test_notebook_on_an_empty_repo(repo: Path) -> None:
    path, _ = write_notebook(repo, repo, "val_bpb", "min")
    probe, nb = execute(path)
    assert probe["total"] == 0 and probe["baseline"] is None and probe["hits"] == []
    assert images(nb) == 1

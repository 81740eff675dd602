"""The bundled example, end to end on the CPU: example → init (prepare) → run, real training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoresearch.agents.constants import find_constants
from autoresearch.journal.ledger import parse_results
from tests.conftest import cli, git

pytest.importorskip("torch")


@pytest.mark.slow
def test_example_trains_and_the_loop_records_rows(tmp_path: Path) -> None:
    repo = tmp_path / "example"
    assert cli("example", str(repo)).returncode == 0
    assert git(repo, "log", "--oneline").count("\n") == 0  # one commit
    constants = find_constants((repo / "train.py").read_text())
    assert {"LEARNING_RATE", "D_MODEL", "DEPTH"} <= set(constants)
    env = {"AUTORESEARCH_CACHE_DIR": str(tmp_path / "cache"), "AUTORESEARCH_EVAL_DATA": str(tmp_path / "eval"),
           "AUTORESEARCH_NOISE__REPEATS": "2", "AUTORESEARCH_BUDGET": "3"}  # budget: pinned by init
    init = cli("init", str(repo), "--tag", "e2e", env=env, timeout=600)
    assert init.returncode == 0, init.stderr
    result = cli("run", str(repo), "--max-runs", "3", "--budget", "3", "--grace", "60", env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = parse_results((repo / "results.tsv").read_text())
    # Two repeats of the baseline, on other seeds, measure the noise: three runs, one row.
    assert len(rows) == 1 and rows[0]["status"] == "keep" and rows[0]["description"] == "baseline (mean of 3 runs)"
    assert 0.5 < float(rows[0]["val_bpb"]) < 8.0  # bits per byte of a barely trained byte model
    log = (repo / ".git/autoresearch/runs/0/run.log").read_text()
    assert "training_seconds:" in log and "num_steps:" in log
    # The metric is the evaluator's, from the exported model on the held-out split; the run's own is a claim.
    assert (repo / ".git/autoresearch/runs/0/output/model.pt2").exists()
    assert (tmp_path / "eval" / "eval.bin").exists() and not (tmp_path / "cache" / "eval.bin").exists()
    evaluated = [json.loads(x) for x in (repo / ".git/autoresearch/journal.jsonl").read_text().splitlines()
                 if '"evaluated"' in x]
    assert len(evaluated) == 3 and all(e["eval_cause"] == "ok" for e in evaluated)
    assert float(rows[0]["val_bpb"]) == pytest.approx(sum(e["metric"] for e in evaluated) / 3, abs=1e-6)
    finished = [json.loads(x) for x in result.stdout.splitlines() if '"experiment.finished"' in x]
    assert finished[0]["training_seconds"] == pytest.approx(3.0, abs=1.0)
    assert git(repo, "status", "--porcelain") == ""

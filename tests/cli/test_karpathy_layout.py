"""karpathy/autoresearch's layout end to end: init, run, report, and run again on a clean tree.

The fixture has the same file names as that repo (prepare.py read-only, train.py the target,
program.md, pyproject.toml, a tracked progress.png and analysis.ipynb); its train.py is a fast
stand-in that prints the same summary block as the real one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoresearch.sessions.session import mentions_metric
from tests.conftest import cli, git

PREPARE = '''\
"""Stand-in for karpathy's prepare.py: fixed constants, data preparation, and the evaluation."""
import os
from pathlib import Path

MAX_SEQ_LEN = 2048
TIME_BUDGET = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", 300))
CACHE_DIR = Path(os.environ.get("AUTORESEARCH_CACHE", Path.home() / ".cache" / "autoresearch"))


def evaluate_bpb(depth, matrix_lr, warmup_ratio):
    return 1.0 + abs(depth - 6) * 0.01 + (matrix_lr - 0.02) ** 2 * 10 + warmup_ratio * 0.05


if __name__ == "__main__":
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    (CACHE_DIR / "shard_00000.parquet").write_bytes(b"tokens")
    print("Done! Ready to train.")
'''

TRAIN = '''\
"""Stand-in for karpathy's train.py: the constants the agent edits and the same summary block."""
import time

from prepare import CACHE_DIR, MAX_SEQ_LEN, TIME_BUDGET, evaluate_bpb

DEPTH = 8
DEVICE_BATCH_SIZE = 128
MATRIX_LR = 0.04
WARMUP_RATIO = 0.0

t_start = time.time()
assert (CACHE_DIR / "shard_00000.parquet").exists(), "run prepare.py first"
time.sleep(0.05)
total_training_time = time.time() - t_start
val_bpb = evaluate_bpb(DEPTH, MATRIX_LR, WARMUP_RATIO)
t_end = time.time()

print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {total_training_time:.1f}")
print(f"total_seconds:    {t_end - t_start:.1f}")
print(f"peak_vram_mb:     {45060.2:.1f}")
print(f"mfu_percent:      {39.80:.2f}")
print(f"total_tokens_M:   {499.6:.1f}")
print(f"num_steps:        {953}")
print(f"num_params_M:     {50.3:.1f}")
print(f"depth:            {DEPTH}")
'''

FILES = {
    "prepare.py": PREPARE,
    "train.py": TRAIN,
    "program.md": "# autoresearch\n\nThe idea: give an AI agent a small but real LLM training setup...\n",
    "pyproject.toml": '[project]\nname = "autoresearch"\nversion = "0.1.0"\nrequires-python = ">=3.10"\n',
    "analysis.ipynb": json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}),
    "README.md": "# autoresearch\n",
    ".gitignore": "__pycache__/\n.venv/\n",
}
PROGRESS_PNG = b"\x89PNG\r\n\x1a\n the author's own chart"


@pytest.fixture
def karpathy(tmp_path: Path) -> Path:
    repo = tmp_path / "autoresearch"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "master")
    for name, text in FILES.items():
        (repo / name).write_text(text)
    (repo / "progress.png").write_bytes(PROGRESS_PNG)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial commit")
    return repo


def clean(repo: Path) -> None:
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert (repo / "progress.png").read_bytes() == PROGRESS_PNG
    assert (repo / "analysis.ipynb").read_text() == FILES["analysis.ipynb"]


def test_init_run_report_run(karpathy: Path) -> None:
    repo = karpathy
    init = cli("init", str(repo), "--tag", "mar5", "--readonly", "prepare.py", "--prepare", "python3 prepare.py",
               "--run", "python3 train.py", "--metric", "val_bpb", "--budget", "1", "--runner", "process")
    assert init.returncode == 0, init.stderr
    assert "runner: process (from flag --runner)" in init.stdout
    clean(repo)

    first = cli("run", str(repo), "--max-experiments", "3")
    assert first.returncode == 0, first.stderr
    rows = [r.split("\t") for r in (repo / "results.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 3 and rows[0][4] == "baseline" and rows[0][3] == "keep"
    assert rows[0][1] == "1.024000" and rows[0][2] == "44.0"  # val_bpb and peak_vram_mb / 1024
    clean(repo)

    report = cli("report", str(repo), "--notebook")
    assert report.returncode == 0, report.stderr
    folder = repo / ".git" / "autoresearch" / "report"
    assert (folder / "progress.png").read_bytes().startswith(b"\x89PNG")
    assert "3 experiments" in (folder / "report.md").read_text()
    assert json.loads((folder / "analysis.ipynb").read_text())["cells"]
    clean(repo)

    refused = cli("report", str(repo), "-o", str(repo))
    assert refused.returncode == 2 and "would overwrite progress.png, tracked by git" in refused.stderr
    clean(repo)

    again = cli("run", str(repo), "--max-experiments", "5")
    assert again.returncode == 0, again.stderr
    rows_after = (repo / "results.tsv").read_text().splitlines()[1:]
    assert len(rows_after) == 5
    status = json.loads(cli("status", str(repo), "--json").stdout)
    assert status["experiments"] == 5
    clean(repo)


def test_metric_check_reads_karpathys_summary_block() -> None:
    assert mentions_metric(TRAIN, "val_bpb")  # print(f"val_bpb:          {val_bpb:.6f}")
    assert mentions_metric(TRAIN, "peak_vram_mb")
    assert mentions_metric('print("val_bpb:", x)', "val_bpb")
    assert not mentions_metric(TRAIN, "val_bp")  # a prefix is not the metric
    assert not mentions_metric(TRAIN, "total_training_time")  # a format field, never printed as a line
    assert not mentions_metric("print(f'my_val_bpb: {x}')", "val_bpb")

"""Sample research repos for the report tests, written the way the loop writes them: a journal of
phase records under .git/autoresearch/, run logs, and results.tsv via the real ledger writer.
The fixtures that use them are in conftest.py."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.journal.ledger import write_results
from autoresearch.journal.store import Journal


@dataclass(frozen=True)
class Exp:
    """One experiment to write: its outcome and what the run cost."""

    status: str  # keep | discard | crash
    metric: float | None
    description: str
    cause: str = "ok"
    wall_s: float = 300.0
    gpu_count: int = 1
    cost_usd: float | None = 0.25
    log: str = "step 1/10\nstep 10/10\n"


def journal_path(repo: Path) -> Path:
    return repo / ".git" / "autoresearch" / "journal.jsonl"


def git_init(repo: Path) -> Path:
    repo.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    # The daemon keeps results.tsv out of git status; do the same so the tree starts clean.
    with (repo / ".git" / "info" / "exclude").open("a") as fh:
        fh.write("/results.tsv\n/autoresearch.toml\n")
    return repo


def sha(n: int) -> str:
    return f"{n:02d}" + "abcdef0123456789" * 2 + "abcdef"


def write_experiment(
    journal: Journal, n: int, exp: Exp, best: tuple[str, float] | None, *, record: bool = True
) -> None:
    """All five phases of experiment ``n`` (or only up to ``running`` when ``record`` is false)."""
    usage = {"input_tokens": 1000, "output_tokens": 200, "cache_read_tokens": 0, "cache_write_tokens": 0}
    usage["cost_usd"] = exp.cost_usd  # type: ignore[assignment]
    journal.phase(
        n, "proposed", parent=sha(0), description=exp.description, agent="test", baseline=n == 0,
        meta={}, usage=usage, content_sha256="0" * 64, content="", when="2025-01-01T00:00:00+00:00",
    )  # fmt: skip
    journal.phase(n, "committed", commit=sha(n))
    journal.phase(n, "running", handle={"pid": 1000 + n})
    if not record:
        return
    metric = exp.metric if exp.status != "crash" else None
    journal.phase(
        n, "finished", cause=exp.cause, exit_code=0 if exp.cause == "ok" else 1, metric=metric, memory_gb=12.5,
        wall_s=exp.wall_s, kill_latency_s=0.0, gpu_count=exp.gpu_count, training_seconds=exp.wall_s * 0.9,
    )  # fmt: skip
    best_commit, best_metric = best if best else (None, None)
    journal.phase(
        n, "recorded", status=exp.status, row_description=exp.description,
        best_commit=best_commit, best_metric=best_metric,
    )  # fmt: skip


def write_ledger(
    repo: Path,
    exps: Sequence[Exp],
    metric: str = "val_bpb",
    direction: str = "min",
    *,
    pending: Exp | None = None,
    skipped_costs: Sequence[float] = (),
) -> Journal:
    """A repo whose journal holds ``exps`` as experiments 0.., plus run logs and results.tsv."""
    if not (repo / ".git").exists():
        git_init(repo)
    (repo / "autoresearch.toml").write_text(f'metric = "{metric}"\ndirection = "{direction}"\n')
    journal = Journal(journal_path(repo))
    best: tuple[str, float] | None = None
    for n, exp in enumerate(exps):
        if exp.status == "keep" and exp.metric is not None:
            best = (sha(n), exp.metric)
        write_experiment(journal, n, exp, best)
        log = repo / ".git" / "autoresearch" / "runs" / str(n) / "run.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(exp.log)
    for cost in skipped_costs:
        journal.append({"type": "usage", "usage": {"input_tokens": 10, "output_tokens": 5, "cost_usd": cost}})
    if pending is not None:
        write_experiment(journal, len(exps), pending, best, record=False)
    write_results(repo, journal.load(), metric)
    return journal


# A night in miniature (lower is better): keeps at 0, 2, 4, 7; crashes at 3 and 6; #5 is far off.
MIXED = (
    Exp("keep", 1.000, "baseline"),
    Exp("discard", 1.010, "lower the learning rate", gpu_count=2),
    Exp("keep", 0.990, "raise the learning rate to 0.04"),
    Exp("crash", None, "double the depth", cause="exit:1", log="step 1\nRuntimeError: CUDA out of memory\n\n"),
    Exp("keep", 0.950, "switch to rotary embeddings | with a pipe", gpu_count=0),
    Exp("discard", 1.200, "tiny batch"),
    Exp("crash", None, "a model too big for the budget", cause="timeout"),
    Exp("keep", 0.945, "longer warmup"),
    Exp("discard", 0.960, "remove weight decay"),
)

# Higher is better: keeps at 0, 1, 3.
MAXED = (
    Exp("keep", 0.50, "baseline"),
    Exp("keep", 0.55, "wider layers"),
    Exp("discard", 0.52, "dropout 0.3"),
    Exp("keep", 0.62, "label smoothing"),
)

ALL_CRASHES = (
    Exp("crash", None, "baseline", cause="exit:2"),
    Exp("crash", None, "fix the import", cause="oom"),
    Exp("crash", None, "smaller batch", cause="signal:9"),
)

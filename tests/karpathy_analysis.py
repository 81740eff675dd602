"""karpathy/autoresearch's ``analysis.ipynb``, its logic rewritten (not vendored) as functions, and a
check that a session's results.tsv means to it what the journal says.

What the notebook does with results.tsv (master 228791f): read it with pandas, upper-case ``status``,
count KEEP rows as "KEPT experiments", draw the running minimum over the KEEP rows of the non-crash
rows (the first of which is its baseline), print ``df.iloc[0]`` as the baseline and the min over KEEP
rows as the best, and rank each KEEP row after the first by its delta from the previous KEEP row.

``check_session(repo)`` is reusable: any test (or the integrator, on any session) can run it on a repo
the daemon worked in.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from autoresearch.journal.store import Journal, JournalState


@dataclass(frozen=True)
class Analysis:
    total: int
    """``Total experiments``: the number of rows."""
    counts: dict[str, int]
    """``value_counts()`` of the upper-cased status."""
    kept: list[tuple[int, float, str]]
    """``KEPT experiments``: (row index, metric, description) of each KEEP row."""
    baseline: float
    """The plot's baseline: the first non-crash row's metric."""
    summary_baseline: float
    """The summary cell's baseline: ``df.iloc[0]``."""
    running_best: list[float]
    """The running minimum (maximum for ``max``) over the KEEP rows, in row order."""
    best: float
    deltas: list[tuple[str, float]]
    """(description, delta from the previous KEEP row) for each KEEP row after the first, in row order."""

    def lines(self, metric: str = "val_bpb") -> list[str]:
        """The notebook's summary lines, as it prints them."""
        total = self.summary_baseline - self.best
        return [f"Total experiments: {self.total}", f"KEPT experiments ({len(self.kept)} total):",
                f"Baseline {metric}:  {self.summary_baseline:.6f}", f"Best {metric}:      {self.best:.6f}",
                f"Total improvement: {total:.6f} ({total / self.summary_baseline * 100:.2f}%)"]


def analyse(text: str, metric: str = "val_bpb", direction: str = "min") -> Analysis:
    """The notebook's cells on the text of a results.tsv (pandas, as the notebook uses)."""
    import pandas as pd

    df = pd.read_csv(io.StringIO(text), sep="\t", quoting=csv.QUOTE_NONE)
    df[metric] = pd.to_numeric(df[metric], errors="coerce")
    df["memory_gb"] = pd.to_numeric(df["memory_gb"], errors="coerce")
    df["status"] = df["status"].str.strip().str.upper()
    counts = {str(k): int(v) for k, v in df["status"].value_counts().items()}
    kept = df[df["status"] == "KEEP"].copy()
    valid = df[df["status"] != "CRASH"].copy().reset_index(drop=True)
    kept_valid = valid.loc[valid["status"] == "KEEP", metric]
    running = kept_valid.cummin() if direction == "min" else kept_valid.cummax()
    kept["prev"] = kept[metric].shift(1)
    kept["delta"] = (kept["prev"] - kept[metric]) if direction == "min" else (kept[metric] - kept["prev"])
    best = kept[metric].min() if direction == "min" else kept[metric].max()
    return Analysis(
        total=len(df), counts=counts,
        kept=[(int(i), float(r[metric]), str(r["description"])) for i, r in kept.iterrows()],
        baseline=float(valid.loc[0, metric]), summary_baseline=float(df.iloc[0][metric]),
        running_best=[float(v) for v in running], best=float(best),
        deltas=[(str(r["description"]), float(r["delta"])) for _, r in kept.iloc[1:].iterrows()],
    )


def judged_means(state: JournalState) -> list[tuple[str, float]]:
    """(commit, mean) of each kept change, in the order the judge kept them, straight from the journal:
    the baseline's mean over its own runs (first run and repeats), each later keep's verdict mean."""
    out: list[tuple[str, float]] = []
    recorded = state.completed()
    for exp in recorded:
        if exp.status != "keep" or exp.for_candidate is not None or exp.reason == "repeat":
            continue
        if exp.baseline:
            runs = [float(e.metric) for e in recorded if e.commit == exp.commit and e.for_candidate is None
                    and e.status != "crash" and e.metric is not None]
            out.append((exp.commit, sum(runs) / len(runs)))
        else:
            assert exp.mean is not None, f"keep #{exp.n} has no verdict mean"
            out.append((exp.commit, exp.mean))
    return out


def check_session(repo: Path, metric: str = "val_bpb", direction: str = "min",
                  journal: Path | None = None) -> Analysis:
    """Run the notebook's logic on ``repo``'s results.tsv and assert that it means what the journal says:
    KEEP rows = distinct kept commits (baseline included), the first row is the baseline, the best is the
    last keep's judged mean, and each delta is the difference of the two kept changes' judged means."""
    path = journal or repo / ".git" / "autoresearch" / "journal.jsonl"
    state = Journal(path).load()
    got = analyse((repo / "results.tsv").read_text(encoding="utf-8"), metric, direction)
    kept_commits = {e.commit for e in state.completed() if e.status == "keep"}
    assert len(got.kept) == len(kept_commits), (got.kept, kept_commits)
    expected = judged_means(state)
    assert len(expected) == len(got.kept)
    for (_, value, _), (_, mean) in zip(got.kept, expected, strict=True):
        assert math.isclose(value, round(mean, 6), abs_tol=1e-6), (value, mean)
    assert math.isclose(got.baseline, got.summary_baseline) and math.isclose(got.baseline, round(expected[0][1], 6))
    sign = 1.0 if direction == "min" else -1.0
    for (_, delta), (_, prev), (_, mean) in zip(got.deltas, expected[:-1], expected[1:], strict=True):
        assert math.isclose(delta, round(sign * (prev - mean), 6), abs_tol=2e-6), (delta, prev, mean)
    return got

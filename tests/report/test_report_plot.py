"""progress.png for each edge case: what was drawn, counted, labelled and scaled."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from autoresearch.report.data import load_ledger
from autoresearch.report.plot import PlotStats, draw, short
from tests.report.report_samples import ALL_CRASHES, MAXED, MIXED, Exp

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chart(repo: Path, metric: str = "val_bpb", direction: str = "min") -> tuple[PlotStats, Path]:
    out = repo / "progress.png"
    stats = draw(load_ledger(repo, metric, direction), out, dpi=40)  # type: ignore[arg-type]
    assert out.read_bytes().startswith(PNG_MAGIC)
    return stats, out


def test_mixed_ledger(ledger_repo: Callable[..., Path]) -> None:
    stats, _ = chart(ledger_repo(MIXED))
    assert (stats.kept, stats.discarded, stats.crashed, stats.annotations) == (4, 3, 2, 4)
    assert stats.title == "9 experiments, 3 kept improvements"
    assert stats.ylabel == "val_bpb (lower is better)"
    assert stats.ylim is not None
    lo, hi = stats.ylim
    margin = 0.055 * 0.15  # from the best (0.945) to the baseline (1.0), plus 15%
    assert lo == pytest.approx(0.945 - margin) and hi == pytest.approx(1.0 + margin)
    assert stats.off_scale == 2  # 1.010 and 1.200 are worse than the baseline's margin


def test_empty_ledger(repo: Path) -> None:
    stats, _ = chart(repo)
    assert (stats.kept, stats.discarded, stats.crashed, stats.annotations) == (0, 0, 0, 0)
    assert stats.title == "0 experiments, 0 kept improvements"
    assert stats.ylim is None


def test_baseline_only(ledger_repo: Callable[..., Path]) -> None:
    stats, _ = chart(ledger_repo([Exp("keep", 2.5, "baseline")]))
    assert (stats.kept, stats.discarded, stats.crashed, stats.annotations) == (1, 0, 0, 1)
    assert stats.title == "1 experiment, 0 kept improvements"
    assert stats.ylim is not None
    lo, hi = stats.ylim
    assert lo < 2.5 < hi  # best == baseline: the margin falls back to 1% of the value


def test_all_crashes(ledger_repo: Callable[..., Path]) -> None:
    stats, _ = chart(ledger_repo(ALL_CRASHES))
    assert (stats.kept, stats.discarded, stats.crashed, stats.annotations) == (0, 0, 3, 0)
    assert stats.title == "3 experiments, 0 kept improvements"
    assert stats.ylim is None


def test_higher_is_better(ledger_repo: Callable[..., Path]) -> None:
    stats, _ = chart(ledger_repo(MAXED, metric="accuracy", direction="max"), "accuracy", "max")
    assert (stats.kept, stats.discarded, stats.crashed, stats.annotations) == (3, 1, 0, 3)
    assert stats.title == "4 experiments, 2 kept improvements"
    assert stats.ylabel == "accuracy (higher is better)"
    assert stats.ylim is not None
    lo, hi = stats.ylim
    assert lo == pytest.approx(0.50 - 0.12 * 0.15) and hi == pytest.approx(0.62 + 0.12 * 0.15)
    assert stats.off_scale == 0


def test_running_best_follows_the_direction(ledger_repo: Callable[..., Path]) -> None:
    ledger = load_ledger(ledger_repo(MAXED, metric="accuracy", direction="max"), "accuracy", "max")
    assert ledger.running_best() == [(0, 0.50), (1, 0.55), (3, 0.62)]
    assert ledger.best is not None and ledger.best.n == 3


def test_labels_are_cut_short() -> None:
    assert short("x" * 100) == "x" * 42 + "..."
    assert short("  kept as is  ") == "kept as is"


def test_drawing_stays_off_pyplot_and_the_cli_import_stays_light(ledger_repo: Callable[..., Path]) -> None:
    """Importing the command must not load matplotlib; drawing must not load pyplot's global state."""
    repo = ledger_repo(MIXED)
    code = (
        "import sys; from pathlib import Path\n"
        "import autoresearch.report.command as c\n"
        "assert 'matplotlib' not in sys.modules, 'import loaded matplotlib'\n"
        f"c.render(Path({str(repo)!r}), Path({str(repo)!r}), 'val_bpb', 'min', dpi=30)\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'drawing loaded pyplot'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_noise_band_is_drawn_with_sigma(tmp_path: Path) -> None:
    from autoresearch.report.data import Ledger, Run

    runs = [Run(n=0, status="keep", metric=2.0, description="baseline", baseline=True),
            Run(n=1, status="keep", metric=2.01, description="confirm: baseline"),
            Run(n=2, status="keep", metric=1.5, description="LR 0.4", confidence=50.0)]
    ledger = Ledger(metric="val_bpb", direction="min", runs=runs, sigma=0.01)
    stats = draw(ledger, tmp_path / "p.png", dpi=40)
    assert "Noise ±σ (σ = 0.0100)" in stats.legend
    ledger.sigma = 0.0
    assert not any("Noise" in label for label in draw(ledger, tmp_path / "q.png", dpi=40).legend)


def test_running_best_follows_the_judges_mean_and_repeats_are_not_improvements() -> None:
    from autoresearch.report.data import Ledger, Run

    runs = [Run(n=0, status="keep", metric=3.6, description="baseline", baseline=True, level=3.6),
            Run(n=1, status="keep", metric=3.0, description="confirm: baseline", level=3.3, repeat=True),
            Run(n=2, status="keep", metric=2.7, description="SEQ_LEN", level=2.7)]
    ledger = Ledger(metric="val_bpb", direction="min", runs=runs)
    assert ledger.running_best() == [(0, 3.6), (1, 3.3), (2, 2.7)]
    assert ledger.improvements == 1
    assert [h.run.n for h in ledger.hits()] == [2] and ledger.hits()[0].gain == pytest.approx(0.6)
    assert ledger.best is not None and ledger.best.n == 2

"""``progress.png``: the metric per experiment, the keeps annotated, the running best as a step line.

Drawn with matplotlib's object API on an Agg canvas, never pyplot, so it is headless and leaves no
global state behind (the daemon or a notebook may share the process).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autoresearch.report.data import Ledger, Run, plural, title

KEPT_COLOR = "#2ecc71"
BEST_COLOR = "#27ae60"
LABEL_COLOR = "#1a7a3a"
DISCARD_COLOR = "#cccccc"
LABEL_CHARS = 45


@dataclass(frozen=True)
class PlotStats:
    """What was drawn: points per class, annotations, and discards outside the y range."""

    kept: int
    discarded: int
    crashed: int  # counted in the title, never drawn
    annotations: int
    off_scale: int
    title: str
    ylabel: str
    ylim: tuple[float, float] | None  # None: matplotlib's autoscale (no baseline to anchor it)
    legend: tuple[str, ...] = ()


def short(text: str, limit: int = LABEL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def y_label(ledger: Ledger) -> str:
    return f"{ledger.metric} ({'lower' if ledger.direction == 'min' else 'higher'} is better)"


def y_range(ledger: Ledger) -> tuple[float, float] | None:
    """From the best to the baseline (and the running best's levels, widened by the noise band), plus
    15% of the span (or of the value, if they coincide)."""
    base, best = ledger.baseline, ledger.best
    if base is None or best is None or base.metric is None or best.metric is None:
        return None
    sigma = ledger.sigma or 0.0
    levels = [y for _, y in ledger.running_best()]
    lo = min(base.metric, best.metric, *(y - sigma for y in levels))
    hi = max(base.metric, best.metric, *(y + sigma for y in levels))
    margin = (hi - lo) * 0.15 or abs(hi) * 0.01 or 0.01
    return lo - margin, hi + margin


def draw(ledger: Ledger, path: Path, dpi: int = 150) -> PlotStats:
    """Render the chart to ``path`` (atomically: a viewer left open never sees half a file)."""
    fig, stats = build(ledger)
    _save(fig, path, dpi)
    return stats


def build(ledger: Ledger, figsize: tuple[float, float] = (16, 8)) -> tuple[Figure, PlotStats]:
    """The chart as a figure (the dashboard saves it as SVG), and what was drawn."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    kept = [r for r in ledger.of("keep") if r.metric is not None]
    discarded = [r for r in ledger.of("discard") if r.metric is not None]
    crashed = ledger.of("crash")
    limits = y_range(ledger)

    if discarded:
        ax.scatter(*_xy(discarded), c=DISCARD_COLOR, s=12, alpha=0.5, zorder=2, label="Discarded")
    if kept:
        ax.scatter(*_xy(kept), c=KEPT_COLOR, s=50, zorder=4, label="Kept", edgecolors="black", linewidths=0.5)
        _running_best(ax, ledger)
    for run in kept:
        if run.repeat:
            continue  # a re-measurement of the best: the running best line shows its effect
        ax.annotate(
            short(run.description or f"#{run.n}"),
            (run.n, run.metric),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8.0,
            color=LABEL_COLOR,
            alpha=0.9,
            rotation=30,
            ha="left",
            va="bottom",
        )
    # Counted from what the axes hold, not from the input: the test checks what was really drawn.
    drawn = {c.get_label(): len(cast("Sized", c.get_offsets())) for c in ax.collections}
    annotations = len(ax.texts)  # before the corner note adds a text
    off_scale = 0
    if limits is not None:
        ax.set_ylim(*limits)
        off_scale = sum(1 for r in discarded if r.metric is not None and not limits[0] <= r.metric <= limits[1])
    _decorate(ax, ledger, off_scale)
    return fig, PlotStats(
        kept=drawn.get("Kept", 0),
        discarded=drawn.get("Discarded", 0),
        crashed=len(crashed),
        annotations=annotations,
        off_scale=off_scale,
        title=title(ledger),
        ylabel=y_label(ledger),
        ylim=limits,
        legend=tuple(ax.get_legend_handles_labels()[1]),
    )


def _xy(runs: list[Run]) -> tuple[list[int], list[float]]:
    return [r.n for r in runs], [r.metric for r in runs if r.metric is not None]


def _running_best(ax: Any, ledger: Ledger) -> None:
    points = ledger.running_best()
    last_n = max(r.n for r in ledger.runs)
    if points[-1][0] < last_n:  # carry the frontier on to the latest experiment
        points.append((last_n, points[-1][1]))
    xs, ys = zip(*points, strict=True)
    ax.step(xs, ys, where="post", color=BEST_COLOR, linewidth=2, alpha=0.7, zorder=3, label="Running best")
    if ledger.sigma:  # the noise band: a run inside it is not distinguishable from the best
        lo, hi = [y - ledger.sigma for y in ys], [y + ledger.sigma for y in ys]
        ax.fill_between(xs, lo, hi, step="post", color=BEST_COLOR, alpha=0.12, zorder=1,
                        label=f"Noise ±σ (σ = {ledger.sigma:.4f})")


def _decorate(ax: Any, ledger: Ledger, off_scale: int) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("Experiment #", fontsize=12)
    ax.set_ylabel(y_label(ledger), fontsize=12)
    ax.set_title(title(ledger), fontsize=14)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.2)
    if not ledger.of("keep") and not ledger.of("discard"):  # nothing to plot: say why, large
        empty = "No experiments recorded yet" if not ledger.runs else "Every run crashed"
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, fontsize=16, color="#666666", ha="center", va="center")
    notes = []
    crashes = len(ledger.of("crash"))
    if crashes:
        notes.append(f"{plural(crashes, 'crash', 'crashes')} not shown")
    if off_scale:
        notes.append(f"{plural(off_scale, 'discarded run')} beyond the baseline, off the chart")
    if notes:
        ax.text(0.01, 0.02, "\n".join(notes), transform=ax.transAxes, fontsize=9, color="#666666", va="bottom")
    if ax.get_legend_handles_labels()[0]:
        # The running best ends top right when higher is better: keep the legend off it.
        ax.legend(loc="upper right" if ledger.direction == "min" else "lower right", fontsize=9)


def _save(fig: Figure, path: Path, dpi: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        Path(tmp).chmod(0o644)  # mkstemp makes it 0600; the image is meant to be viewed
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

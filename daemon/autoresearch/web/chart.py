"""The progress chart as SVG, drawn server-side by the report's own plot (the same picture as
``progress.png``: the running best, its ±σ band, the keeps labelled). No chart library in the page:
the browser shows it as an image, where no script in it could ever run."""

from __future__ import annotations

import io
from pathlib import Path

from autoresearch.report.data import Direction, journal_ledger

FIGSIZE = (12.0, 6.0)


def render_svg(journal: Path, metric: str, direction: Direction) -> bytes:
    """The chart of the journal as it is now (the report's loader reads it: once per recorded row)."""
    import matplotlib

    from autoresearch.report.plot import build

    fig, _ = build(journal_ledger(journal, metric, direction), figsize=FIGSIZE)
    out = io.BytesIO()
    # Glyphs as paths (no text nodes at all) and no date or random ids: the same journal gives the same bytes.
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": "autoresearch"}):
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    return out.getvalue()

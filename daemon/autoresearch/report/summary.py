"""``report.md``: the summary figures, the top hits and the crashes, as GitHub-flavoured markdown."""

from __future__ import annotations

import datetime as dt

from autoresearch.report.data import Ledger, last_log_line, plural, title

TOP_HITS = 10


def render(
    ledger: Ledger, image: str | None = "progress.png", top: int = TOP_HITS, now: dt.datetime | None = None
) -> str:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    better = "lower" if ledger.direction == "min" else "higher"
    source = "evaluated by the trusted evaluator" if ledger.evaluated else "self-reported by the runs"
    parts = [
        "# autoresearch report\n",
        f"{title(ledger)}. Metric `{ledger.metric}` ({better} is better; {source}). Generated {stamp}"
        f" from {ledger.source if ledger.source != 'none' else 'an empty ledger'}.\n",
    ]
    if image:
        parts.append(f"![progress]({image})\n")
    parts += ["## Summary\n", _figures(ledger), "## Top hits\n", _hits(ledger, top), "## Crashes\n", _crashes(ledger)]
    return "\n".join(parts)


def _num(value: float) -> str:
    return f"{value:.6f}"


def _rate(count: int, total: int) -> str:
    return f"{count} of {total} ({100.0 * count / total:.1f}%)" if total else "0"


def cell(text: str) -> str:
    """Table-safe text: a pipe would end the cell, a backtick run could swallow the row."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")


def _figures(ledger: Ledger) -> str:
    total = len(ledger.runs)
    base, best = ledger.baseline, ledger.best
    rows: list[tuple[str, str]] = [("Experiments", str(total))]
    if ledger.remeasurements:
        rows.append(("Re-measurement runs", f"{ledger.remeasurements} (baseline repeats, confirmations, "
                     "fresh runs of the best: in the noise σ, in no row)"))
    if ledger.pending is not None:
        rows.append(("In flight", f"#{ledger.pending}"))
    rows.append(("Baseline", f"{_num(base.metric)} (#{base.n})" if base and base.metric is not None else "none"))
    if best is not None and best.metric is not None:
        rows.append(
            ("Best", f"{_num(best.metric)} (#{best.n}, {best.commit or 'no commit'}: {cell(best.description)})")
        )
    else:
        rows.append(("Best", "none"))
    rows.append(("Improvement", _improvement(ledger)))
    rows += [
        ("Kept", _rate(len(ledger.of("keep")), total)),
        ("Discarded", _rate(len(ledger.of("discard")), total)),
        ("Crashed", _rate(len(ledger.of("crash")), total)),
        *_lineage(ledger),
        ("Noise σ", "unknown (no journal)" if ledger.sigma is None else _num(ledger.sigma)),
        ("Claims far from evaluation", ", ".join(f"#{r.n}" for r in ledger.runs if r.claim_flag) or "none"),
        # No run used a GPU: the hours are CPU compute (one device per run), not GPU time.
        ("GPU-hours" if any(r.gpu_count > 0 for r in ledger.runs) or ledger.source != "journal" else "Compute-hours",
         f"{ledger.gpu_hours:.2f}" if ledger.source == "journal" else "unknown (no journal)"),
        ("Agent cost", _cost(ledger)),
    ]
    lines = ["| Figure | Value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _lineage(ledger: Ledger) -> list[tuple[str, str]]:
    """With lanes: discards because another lane's keep landed while they trained (none: no row)."""
    counts = {c: sum(1 for r in ledger.runs if r.cause == c) for c in ("rebase", "stale", "merge-conflict")}
    if not any(counts.values()):
        return []
    return [("Overtaken by another lane", f"{counts['rebase']} rebased and measured again, {counts['stale']} stale, "
                                          f"{counts['merge-conflict']} merge-conflict")]


def _improvement(ledger: Ledger) -> str:
    base, best = ledger.baseline, ledger.best
    if base is None or best is None or base.metric is None or best.metric is None:
        return "none"
    gain = ledger.gain(base.metric, best.metric)
    pct = f"{100.0 * gain / abs(base.metric):.2f}%" if base.metric else "n/a"
    return f"{_num(gain)} ({pct}) over {plural(ledger.improvements, 'kept improvement')}"


def _cost(ledger: Ledger) -> str:
    if ledger.cost_usd is None:
        return "unknown"
    tokens = f"{ledger.input_tokens:,} input / {ledger.output_tokens:,} output tokens"
    return f"${ledger.cost_usd:,.2f} ({tokens})"


def _hits(ledger: Ledger, top: int) -> str:
    hits = ledger.hits()
    if not hits:
        return "No kept improvement over the baseline yet.\n"
    lines = [
        f"Kept runs ranked by their gain over the previous keep (top {min(top, len(hits))} of {len(hits)}).\n",
        f"| Rank | # | Commit | {cell(ledger.metric)} | Gain | Gain % | Confidence | Description |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for rank, hit in enumerate(hits[:top], 1):
        run = hit.run
        pct = f"{hit.gain_pct:.2f}%" if hit.gain_pct is not None else "n/a"
        metric = _num(run.metric) if run.metric is not None else ""
        confidence = "-" if run.confidence is None else f"{run.confidence:.1f}σ"
        lines.append(f"| {rank} | {run.n} | {run.commit} | {metric} | {hit.gain:+.6f} | {pct} | {confidence} "
                     f"| {cell(run.description)} |")
    return "\n".join(lines) + "\n"


def _crashes(ledger: Ledger) -> str:
    crashes = ledger.of("crash")
    if not crashes:
        return "No crashes.\n"
    lines = ["| # | Commit | Cause | Description | Last log line |", "| ---: | --- | --- | --- | --- |"]
    for run in crashes:
        tail = last_log_line(ledger.log_path(run.n))
        cause = run.cause or "unknown"
        lines.append(f"| {run.n} | {run.commit} | {cell(cause)} | {cell(run.description)} | {cell(tail)} |")
    return "\n".join(lines) + "\n"

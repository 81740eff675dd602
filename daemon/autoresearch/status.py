"""What the journal says right now: counts, best, spend, the running experiment. Read-only: it
works while the daemon runs, and never takes the daemon's lock."""

from __future__ import annotations

import datetime as dt
from typing import Any

from autoresearch import noise
from autoresearch.journal import JournalState


def total_cost(state: JournalState) -> float:
    cost = sum(float((e.get("usage") or {}).get("cost_usd", 0.0)) for e in state.ordered())
    return cost + sum(float((r.get("usage") or {}).get("cost_usd", 0.0)) for r in state.skipped)


def total_tokens(state: JournalState) -> dict[str, int]:
    keys = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    usages = [e.get("usage") or {} for e in state.ordered()] + [r.get("usage") or {} for r in state.skipped]
    return {k: int(sum(float(u.get(k, 0)) for u in usages)) for k in keys}


def gpu_hours(state: JournalState) -> float:
    """Run wall time weighted by GPUs used (a CPU run counts as one device)."""
    seconds = sum(float(e.get("wall_s") or 0.0) * max(int(e.get("gpu_count") or 0), 1) for e in state.ordered())
    return seconds / 3600


def summarize(state: JournalState, direction: str, now: dt.datetime | None = None) -> dict[str, Any]:
    done = state.recorded()
    counts = {s: sum(1 for e in done if e.status == s) for s in ("keep", "discard", "crash")}
    # A re-run of the best is kept too, but it is not a new best.
    keeps = [e for e in done if e.status == "keep" and e.metric is not None and e.get("reason") != "repeat"]
    baseline, best = (keeps[0], keeps[-1]) if keeps else (None, None)
    improvement = None
    if baseline is not None and best is not None and baseline.metric and best.metric is not None:
        delta = (baseline.metric - best.metric) if direction == "min" else (best.metric - baseline.metric)
        improvement = {"absolute": delta, "percent": 100.0 * delta / abs(baseline.metric)}
    pending = state.pending()
    running = None
    if pending is not None:
        since = pending.get(f"{pending.phase}_at") or pending.get("proposed_at")
        elapsed = None
        if since:
            elapsed = ((now or dt.datetime.now(dt.UTC)) - dt.datetime.fromisoformat(since)).total_seconds()
        running = {
            "n": pending.n,
            "phase": pending.phase,
            "description": pending.get("description"),
            "phase_elapsed_s": elapsed,
        }
    confidences = [{"n": e.n, "confidence": e.get("confidence"), "reason": e.get("reason")}
                   for e in keeps if e.get("reason") not in (None, "first", "repeat")]
    return {
        "tag": state.session.get("tag"),
        "sigma": noise.sigma(state),
        "best_mean": noise.best_mean(state),
        "keeps_confidence": confidences,
        "claim_flags": [e.n for e in done if e.get("claim_flag")],
        "experiments": len(done),
        **counts,
        "baseline": None if baseline is None else baseline.metric,
        "best": None if best is None else best.metric,
        "best_commit": None if best is None else best.get("commit"),
        "best_n": None if best is None else best.n,
        "best_description": None if best is None else best.get("description"),
        "improvement": improvement,
        "running": running,
        "gpu_hours": gpu_hours(state),
        "cost_usd": total_cost(state),
        "tokens": total_tokens(state),
        "skipped_proposals": len(state.skipped),
        "stopped": state.stops[-1].get("reason") if state.stops else None,
    }

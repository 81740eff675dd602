"""The page's data, as JSON: results.tsv's rows (read through ``ledger``) joined to the experiments
that measured each change, the lanes with their run in flight, the agent's notes and cost, and the
limits with when they will be reached. Plain data: the page renders every string as text."""

from __future__ import annotations

import datetime as dt
from typing import Any

from autoresearch.journal import ledger
from autoresearch.journal.status import gpu_hours, lane_lines, summarize, total_cost
from autoresearch.journal.store import Experiment, JournalState
from autoresearch.ops.config import Settings
from autoresearch.runners.lanes import Lane

NOTES_LIMIT = 20_000
"""Characters of the agent's notes sent to the page."""


def snapshot(
    state: JournalState, settings: Settings, lanes: list[Lane], now: dt.datetime | None = None
) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.UTC)
    summary = summarize(state, settings.direction, now=now, lanes=lanes, budget=settings.budget)
    notes = state.agent_state.get("notes")
    return {
        "now": now.isoformat(),
        "tag": state.tag,
        "metric": settings.metric,
        "direction": settings.direction,
        "budget_s": settings.budget,
        "agent": _agent(state, settings.agent),
        "summary": {k: summary[k] for k in (
            "experiments", "keep", "discard", "crash", "baseline", "best", "best_n", "sigma", "improvement",
            "gpu_hours", "cost_usd", "tokens", "skipped_proposals", "failed_proposals_in_a_row",
            "last_proposal_error", "waiting", "stopped")},
        "rows": rows(state, settings.metric),
        "lanes": lane_lines(state, lanes, settings.budget, now),
        "notes": notes[:NOTES_LIMIT] if isinstance(notes, str) else None,
        "limits": limits(state, settings, now),
    }


def _agent(state: JournalState, configured: str) -> str:
    """The agent that made the latest proposal (the daemon's settings may differ from this process's)."""
    named = (e.agent for e in reversed(state.ordered()) if e.agent not in (None, "baseline", "judge"))
    return next(named, None) or configured


def rows(state: JournalState, metric: str) -> list[dict[str, Any]]:
    """One entry per results.tsv row, its cells as ``ledger`` writes them, plus the experiment the row
    records (its verdict) and every measurement of the row's commit (re-measurements included)."""
    cells = ledger.parse_results(ledger.render(state, metric))
    recorded = state.completed()
    by_commit: dict[str, list[Experiment]] = {}
    for exp in recorded:
        by_commit.setdefault(exp.commit[:7], []).append(exp)
    if len(cells) == len(recorded):
        pairs = list(zip(cells, recorded, strict=True))
    else:  # rows are per change, not per run: a row stands for the last verdict on its commit
        pairs = [(row, by_commit[row["commit"]][-1]) for row in cells if row["commit"] in by_commit]
    return [_row(i, row, exp, by_commit[exp.commit[:7]], metric) for i, (row, exp) in enumerate(pairs)]


def _row(index: int, cells: dict[str, str], exp: Experiment, runs: list[Experiment], metric: str) -> dict[str, Any]:
    record = exp.verdict
    return {
        "row": index,
        "n": exp.n,
        "commit": cells["commit"],
        "metric": _number(cells.get(metric)),
        "memory_gb": _number(cells.get("memory_gb")),
        "status": cells["status"],
        "description": cells["description"],
        "lane": exp.lane,
        "cause": exp.cause,
        "wall_s": exp.wall_s,
        "agent": exp.agent,
        "cost_usd": exp.usage.cost_usd,
        "verdict": {
            "decision": record.decision, "reason": record.reason, "confidence": record.confidence,
            "sigma": record.sigma, "gain": record.gain, "threshold": record.threshold, "z": record.z,
            "mean": record.mean, "lineage": record.lineage, "claim_flag": exp.claim_flag,
        },
        "measurements": [
            {"n": r.n, "metric": r.metric, "status": r.status, "cause": r.cause, "wall_s": r.wall_s,
             "description": r.description} for r in runs
        ],
    }


def _number(text: str | None) -> float | None:
    try:
        return None if text is None else float(text)
    except ValueError:
        return None


def limits(state: JournalState, settings: Settings, now: dt.datetime) -> list[dict[str, Any]]:
    """Each configured limit: how much is used, and when it will be reached at the session's pace so far."""
    caps = settings.limits
    started = _started(state)
    hours = (now - started).total_seconds() / 3600 if started is not None else 0.0
    out: list[dict[str, Any]] = []
    if caps.max_experiments is not None:
        out.append(_limit("experiments", len(state.completed()), caps.max_experiments, hours, now))
    if caps.max_gpu_hours is not None:
        out.append(_limit("GPU-hours", gpu_hours(state), caps.max_gpu_hours, hours, now))
    if caps.max_cost_usd is not None:
        out.append(_limit("agent cost (USD)", total_cost(state), caps.max_cost_usd, hours, now))
    if caps.stop_at is not None:
        stop_at = caps.stop_at if caps.stop_at.tzinfo else caps.stop_at.astimezone()
        out.append({"name": "stop at", "used": None, "limit": None, "eta": stop_at.isoformat(),
                    "reached": now >= stop_at})
    return out


def _limit(name: str, used: float, cap: float, hours: float, now: dt.datetime) -> dict[str, Any]:
    """ETA: the rest at the mean rate since the session's first experiment (none before any progress)."""
    eta = None
    if used >= cap:
        eta = now.isoformat()
    elif used > 0 and hours > 0:
        eta = (now + dt.timedelta(hours=(cap - used) * hours / used)).isoformat()
    return {"name": name, "used": used, "limit": cap, "eta": eta, "reached": used >= cap}


def _started(state: JournalState) -> dt.datetime | None:
    first = state.ordered()[0].phase_at("proposed") if state.experiments else None
    return dt.datetime.fromisoformat(first) if first else None

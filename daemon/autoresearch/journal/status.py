"""What the journal says right now: counts, best, spend, the running experiment. Read-only: it
works while the daemon runs, and never takes the daemon's lock."""

from __future__ import annotations

import datetime as dt
from typing import Any

from autoresearch.journal import ledger
from autoresearch.journal.store import Experiment, JournalState
from autoresearch.judging import noise
from autoresearch.runners.lanes import Lane


def total_cost(state: JournalState) -> float:
    """What the agent cost: proposals that ran, failed (skipped) or were voided by a crash all count."""
    return sum(u.cost_usd or 0.0 for u in state.all_usage())


def total_tokens(state: JournalState) -> dict[str, int]:
    usages = state.all_usage()
    return {
        "input_tokens": int(sum(u.input_tokens for u in usages)),
        "output_tokens": int(sum(u.output_tokens for u in usages)),
        "cache_read_tokens": int(sum(u.cache_read_tokens for u in usages)),
        "cache_write_tokens": int(sum(u.cache_write_tokens for u in usages)),
    }


def gpu_hours(state: JournalState) -> float:
    """Run wall time weighted by GPUs used (a CPU run counts as one device)."""
    finished = [e.finished for e in state.ordered() if e.finished is not None]
    return sum(f.wall_s * max(f.gpu_count, 1) for f in finished) / 3600


def summarize(
    state: JournalState, direction: str, now: dt.datetime | None = None, lanes: list[Lane] | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    done = state.completed()
    changes = ledger.rows(state)  # results.tsv's rows: re-measurements are runs, not experiments
    counts = {s: sum(1 for r in changes if r.status == s) for s in ("keep", "discard", "crash")}
    keeps = [r for r in changes if r.status == "keep" and r.metric is not None]
    baseline, best = (keeps[0], keeps[-1]) if keeps else (None, None)
    improvement = None
    if baseline is not None and best is not None and baseline.metric and best.metric is not None:
        delta = (baseline.metric - best.metric) if direction == "min" else (best.metric - baseline.metric)
        sd = noise.sigma(state)
        improvement = {"absolute": delta, "percent": 100.0 * delta / abs(baseline.metric),
                       "sigmas": delta / sd if sd > 0 else None}
    pending = state.pending()
    running = None
    if pending is not None:
        since = pending.phase_at(pending.phase) or pending.phase_at("proposed")
        running = {
            "n": pending.n,
            "phase": pending.phase,
            "description": pending.description,
            "phase_elapsed_s": _elapsed(since, now),
        }
    confidences = [{"n": r.n, "confidence": r.confidence, "reason": state.experiments[r.verdict_n].reason}
                   for r in keeps if not r.baseline and state.experiments[r.verdict_n].reason not in (None, "first")]
    return {
        "tag": state.tag,
        "sigma": noise.sigma(state),
        "best_mean": noise.best_mean(state),
        "keeps_confidence": confidences,
        "claim_flags": [e.n for e in done if e.claim_flag],
        "experiments": len(changes),
        "run_count": len(done),
        "remeasurements": len(done) - sum(1 for e in done if e.confirm_of is None and e.for_candidate is None),
        **counts,
        "baseline": None if baseline is None else baseline.metric,
        "best": None if best is None else best.metric,
        "best_commit": None if best is None else best.commit,
        "best_n": None if best is None else best.n,
        "best_description": None if best is None else best.description,
        "improvement": improvement,
        "running": running,
        "gpu_hours": gpu_hours(state),
        "gpu_used": any(e.finished is not None and e.gpu_count > 0 for e in state.ordered()),
        "cost_usd": total_cost(state),
        "tokens": total_tokens(state),
        "skipped_proposals": len(state.skipped),
        "failed_proposals_in_a_row": len(state.failed_in_a_row),
        "last_proposal_error": state.failed_in_a_row[-1].error if state.failed_in_a_row else None,
        "waiting": _waiting(state, now),
        "lanes": lane_lines(state, lanes or [Lane(0)], budget, now),
        "stopped": state.stops[-1].reason if state.stops else None,
    }


def _elapsed(since: str | None, now: dt.datetime | None) -> float | None:
    if not since:
        return None
    return ((now or dt.datetime.now(dt.UTC)) - dt.datetime.fromisoformat(since)).total_seconds()


def _waiting(state: JournalState, now: dt.datetime | None) -> dict[str, Any] | None:
    """What the loop waits for (the engine, a GPU), since when. A stopped loop waits for nothing."""
    wait = state.waiting
    if wait is None:
        return None
    return {"what": wait.what, "reason": wait.reason, "elapsed_s": _elapsed(wait.at, now)}


def lane_of(exp: Experiment) -> int:
    """The lane an experiment runs in: journaled in its phase records as ``lane`` (0 before lanes)."""
    typed = getattr(exp, "lane", None)  # Experiment.lane where the fold types the field
    lane = typed if typed is not None else exp.extra.get("lane")
    return lane if isinstance(lane, int) else 0


def lane_lines(
    state: JournalState, lanes: list[Lane], budget: float | None, now: dt.datetime | None
) -> list[dict[str, Any]]:
    """One entry per lane: where it runs (GPU or cores), its open experiment if any, and how long the
    experiment has been in its phase (the run's elapsed time against the budget while it trains)."""
    open_ = {lane_of(e): e for e in state.ordered() if not e.done}  # the newest open one of each lane
    known = {lane.index: lane for lane in lanes}
    for index in open_:
        known.setdefault(index, Lane(index))  # a lane the current settings no longer have, still in flight
    out = []
    for index in sorted(known):
        lane, exp = known[index], open_.get(index)
        entry: dict[str, Any] = {"lane": index, "where": lane.where,
                                 "gpus": list(lane.gpus), "n": None, "phase": None, "description": None,
                                 "elapsed_s": None, "budget_s": budget}
        if exp is not None:
            since = exp.phase_at(exp.phase) or exp.phase_at("proposed")
            entry.update(n=exp.n, phase=exp.phase, description=exp.description, elapsed_s=_elapsed(since, now))
        out.append(entry)
    return out


def run_lines(state: JournalState) -> list[dict[str, Any]]:
    """Every recorded run, re-measurements included, with the row (change) it belongs to and its role:
    ``baseline``, ``repeat`` (of the baseline), ``change``, ``confirmation`` (of a change) or
    ``fresh best`` (a run of the best made to judge a candidate)."""
    keys = ledger.change_keys(state)
    out = []
    for exp in state.completed():
        if exp.for_candidate is not None:
            role = "fresh best"
        elif exp.baseline:
            role = "baseline"
        elif exp.confirm_of is not None:
            role = "repeat" if state.experiments[keys[exp.n]].baseline else "confirmation"
        else:
            role = "change"
        out.append({"n": exp.n, "change": keys[exp.n], "role": role, "commit": exp.commit[:7],
                    "status": exp.status, "metric": exp.metric, "decision": exp.decision,
                    "reason": exp.reason, "wall_s": exp.wall_s, "description": exp.row_description or exp.description})
    return out

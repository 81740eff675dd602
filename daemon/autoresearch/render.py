"""Human-readable views for the terminal (rich)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from autoresearch.journal import Experiment

_STYLE = {"keep": "bold green", "discard": "dim", "crash": "red"}


def progress_line(exp: Experiment, metric: str) -> str:
    status = exp.status
    value = "-" if exp.metric is None else f"{exp.metric:.6f}"
    wall = exp.wall_s
    style = _STYLE.get(status, "")
    desc = exp.row_description or exp.description
    return f"#{exp.n:<3} [{style}]{status:<7}[/] {metric} {value:>10}  {wall:6.1f}s  {desc}"


def status_table(s: dict[str, Any]) -> Table:
    table = Table(title=f"autoresearch {s.get('tag') or ''}".strip(), show_header=False)
    table.add_column("what")
    table.add_column("value")
    metric = s.get("metric", "metric")
    table.add_row("experiments", f"{s['experiments']} (keep {s['keep']}, discard {s['discard']}, crash {s['crash']})")
    table.add_row(f"baseline {metric}", _num(s.get("baseline")))
    best = _num(s.get("best_mean", s.get("best")))
    if s.get("best_commit"):
        best += f"  #{s['best_n']} {str(s['best_commit'])[:7]} {s.get('best_description') or ''}"
    table.add_row(f"best {metric} (mean)", best)
    if s.get("metric_source"):
        table.add_row("metric", str(s["metric_source"]))
    table.add_row("noise σ", _num(s.get("sigma")))
    keeps = s.get("keeps_confidence") or []
    if keeps:
        table.add_row("keep confidence", ", ".join(
            f"#{k['n']} " + ("-" if k.get("confidence") is None else f"{k['confidence']:.1f}σ")
            + ("" if k.get("reason") == "better" else f" ({k.get('reason')})") for k in keeps[-5:]))
    if s.get("claim_flags"):
        table.add_row("claims far from evaluation", ", ".join(f"#{n}" for n in s["claim_flags"][-10:]))
    imp = s.get("improvement")
    table.add_row("improvement", "-" if not imp else f"{imp['absolute']:.6f} ({imp['percent']:.2f}%)")
    if s.get("branch"):
        table.add_row("branch", branch_line(s["branch"]))
    lanes = s.get("lanes") or []
    for lane in lanes if len(lanes) > 1 else []:
        table.add_row(f"lane {lane['lane']}", lane_line(lane))
    run = s.get("running")
    if run and len(lanes) <= 1:
        elapsed = run.get("phase_elapsed_s")
        since = "" if elapsed is None else f", {elapsed:.0f}s in this phase"
        table.add_row("running", f"#{run['n']} {run['phase']}{since}: {run.get('description') or ''}")
    wait = s.get("waiting")
    if wait:
        elapsed = wait.get("elapsed_s")
        since = "" if elapsed is None else f" for {elapsed:.0f}s"
        table.add_row("waiting", f"for the {wait['what']}{since}: {wait.get('reason') or ''}")
    if s.get("failed_proposals_in_a_row"):
        last = (str(s.get("last_proposal_error") or "-").strip().splitlines() or ["-"])[0][:200]
        table.add_row("failed proposals", f"{s['failed_proposals_in_a_row']} in a row; last: {last}")
    table.add_row("gpu-hours", f"{s['gpu_hours']:.3f}")
    tokens = s.get("tokens") or {}
    table.add_row("agent cost", f"${s['cost_usd']:.2f} ({tokens.get('input_tokens', 0)} in, "
                  f"{tokens.get('cache_read_tokens', 0)} cached, {tokens.get('output_tokens', 0)} out)")
    if s.get("stopped"):
        table.add_row("last stop", str(s["stopped"]))
    return table


def lane_line(lane: dict[str, Any]) -> str:
    """``gpu 3  #12 running 121s/300s  lr 0.04``: where the lane runs, and what, for how long."""
    if lane.get("n") is None:
        return f"{lane['where']}  idle"
    elapsed, budget = lane.get("elapsed_s"), lane.get("budget_s")
    clock = "" if elapsed is None else f" {elapsed:.0f}s"
    if clock and lane.get("phase") == "running" and budget:
        clock += f"/{budget:.0f}s"
    return f"{lane['where']}  #{lane['n']} {lane['phase']}{clock}  {lane.get('description') or ''}".rstrip()


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.6f}"


def branch_line(b: dict[str, Any]) -> str:
    """The session branch against the best: at it, or why a checkout of it is behind (``branchsync``)."""
    tip = str(b.get("tip") or "")[:7] or "missing"
    where = f" (checked out in {b['checkout']})" if b.get("checkout") else ""
    if b.get("state") == "ok":
        return f"{b['name']} at {tip}, the best{where}"
    if b.get("state") == "behind":
        return f"{b['name']} at {tip}{where} is behind the best {str(b.get('want'))[:7]}: {b.get('reason')}"
    return f"{b['name']} at {tip}: {b.get('reason')}; the next run measures it as the new base"

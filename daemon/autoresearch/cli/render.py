"""Human-readable views for the terminal (rich).

Nothing a run, an agent or a user wrote is ever parsed as console markup: descriptions hold things
like ``[exit:127]``, which rich would swallow as a tag. Views are built from ``Text`` (never markup
strings), so every character shows as written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from autoresearch.cli.slurm_status import job_line
from autoresearch.journal.store import Experiment

_STYLE = {"keep": "bold green", "discard": "dim", "crash": "red"}


def progress_line(exp: Experiment, metric: str) -> Text:
    """One run as it is recorded: number, status (styled), metric, wall time, description (as text)."""
    status = exp.status
    value = "-" if exp.metric is None else f"{exp.metric:.6f}"
    desc = exp.row_description or exp.description
    line = Text(f"#{exp.n:<3} ")
    line.append(f"{status:<7}", style=_STYLE.get(status, ""))
    line.append(f" {metric} {value:>10}  {exp.wall_s:6.1f}s  {desc}")
    return line


def _add(table: Table, what: str, value: str) -> None:
    """A row of plain text: metric names, descriptions and errors come from users, agents and runs."""
    table.add_row(Text(what), Text(value))


def status_table(s: dict[str, Any]) -> Table:
    table = Table(title=Text(f"autoresearch {s.get('tag') or ''}".strip()), show_header=False)
    table.add_column("what")
    table.add_column("value")
    metric = s.get("metric", "metric")
    session = s.get("session")
    if session:
        who = f"running, pid {s['pid']}" if s.get("pid") else str(session.get("state"))
        _add(table, "session", f"{session['tag']} on {session['branch']} ({who})")
    _add(table, "experiments", f"{s['experiments']} (keep {s['keep']}, discard {s['discard']}, crash {s['crash']})")
    if s.get("remeasurements"):
        _add(table, "runs", f"{s['run_count']} ({s['remeasurements']} re-measurements by the judge)")
    _add(table, f"baseline {metric}", _num(s.get("baseline")))
    best = _num(s.get("best_mean", s.get("best")))
    if s.get("best_commit"):
        best += f"  #{s['best_n']} {str(s['best_commit'])[:7]} {s.get('best_description') or ''}"
    _add(table, f"best {metric} (mean)", best)
    if s.get("metric_source"):
        _add(table, "metric", str(s["metric_source"]))
    _add(table, "noise σ", _num(s.get("sigma")))
    keeps = s.get("keeps_confidence") or []
    if keeps:
        _add(table, "keep confidence", ", ".join(
            f"#{k['n']} " + ("-" if k.get("confidence") is None else f"{k['confidence']:.1f}σ")
            + ("" if k.get("reason") == "better" else f" ({k.get('reason')})") for k in keeps[-5:]))
    if s.get("claim_flags"):
        _add(table, "claims far from evaluation", ", ".join(f"#{n}" for n in s["claim_flags"][-10:]))
    imp = s.get("improvement")
    _add(table, "improvement", "-" if not imp else f"{imp['absolute']:.6f} ({imp['percent']:.2f}%"
         + ("" if imp.get("sigmas") is None else f", {imp['sigmas']:.1f}σ") + ")")
    if s.get("branch"):
        _add(table, "branch", branch_line(s["branch"]))
    lanes = s.get("lanes") or []
    for lane in lanes if len(lanes) > 1 else []:
        _add(table, f"lane {lane['lane']}", lane_line(lane))
    run = s.get("running")
    if run and len(lanes) <= 1:
        elapsed = run.get("phase_elapsed_s")
        since = "" if elapsed is None else f", {elapsed:.0f}s in this phase"
        _add(table, "running", f"#{run['n']} {run['phase']}{since}: {run.get('description') or ''}")
    for lane in lanes:
        if lane.get("job"):
            _add(table, "slurm job" if len(lanes) <= 1 else f"lane {lane['lane']} job", job_line(lane["job"]))
    if s.get("slurm") and s["slurm"] != "answers":
        _add(table, "slurmctld", str(s["slurm"]))
    wait = s.get("waiting")
    if wait:
        elapsed = wait.get("elapsed_s")
        since = "" if elapsed is None else f" for {elapsed:.0f}s"
        what = "Slurm controller (slurmctld)" if wait["what"] == "slurm" else wait["what"]
        _add(table, "waiting", f"for the {what}{since}: {wait.get('reason') or ''}")
    if s.get("limits"):
        table.add_row("run limits", Text(notice_line(s["limits"])))  # paths and errors: never markup
    if s.get("failed_proposals_in_a_row"):
        last = (str(s.get("last_proposal_error") or "-").strip().splitlines() or ["-"])[0][:200]
        _add(table, "failed proposals", f"{s['failed_proposals_in_a_row']} in a row; last: {last}")
    _add(table, "gpu-hours" if s.get("gpu_used") else "compute-hours", f"{s['gpu_hours']:.3f}")
    if s.get("sandbox"):
        _add(table, "sandbox", str(s["sandbox"]))
    tokens = s.get("tokens") or {}
    _add(table, "agent cost", f"${s['cost_usd']:.2f} ({tokens.get('input_tokens', 0)} in, "
                  f"{tokens.get('cache_read_tokens', 0)} cached, {tokens.get('output_tokens', 0)} out)")
    if s.get("stopped"):
        _add(table, "last stop", str(s["stopped"]))
    return table


def runs_table(runs: list[dict[str, Any]], metric: str) -> Table:
    """``status --runs``: every run, the judge's re-measurements included, with the row it belongs to."""
    table = Table(title="runs")
    for column in ("#", "row", "role", "commit", "status", Text(metric), "wall", "description"):
        table.add_column(column)
    for run in runs:
        value = "-" if run["metric"] is None else f"{run['metric']:.6f}"
        cells = (str(run["n"]), f"#{run['change']}", run["role"], run["commit"], run["status"], value,
                 f"{run['wall_s']:.1f}s", run["description"])
        table.add_row(*(Text(str(c)) for c in cells))
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


def sessions_table(entries: list[dict[str, Any]]) -> Table:
    """``autoresearch sessions``: one line per session, oldest first."""
    table = Table(title="sessions (archived ones in .git/autoresearch/archive/)")
    for column in ("tag", "state", "experiments", "keep", "best", "pid", "archive"):
        table.add_column(column)
    for e in entries:
        archive = Path(str(e["folder"])).name if e["state"] == "archived" else "-"
        table.add_row(str(e["tag"]), str(e["state"]), str(e["experiments"]), str(e["keep"]), _num(e.get("best")),
                      "-" if e.get("pid") is None else str(e["pid"]), Text(archive))
    return table


def notice_line(info: dict[str, Any]) -> str:
    """The process runner's limits as the daemon found them at its start (limits_notice.notice)."""
    head = f"{info.get('enforcer')}: " + ", ".join(info.get("applied") or [])
    missing = info.get("not_enforced") or []
    if not missing:
        return head
    why = f" ({info['reason']})" if info.get("reason") else ""
    return f"NOT enforced{why}: {'; '.join(missing)}. Applied: {head}"


def branch_line(b: dict[str, Any]) -> str:
    """The session branch against the best: at it, or why a checkout of it is behind (``branchsync``)."""
    tip = str(b.get("tip") or "")[:7] or "missing"
    where = f" (checked out in {b['checkout']})" if b.get("checkout") else ""
    if b.get("state") == "ok":
        return f"{b['name']} at {tip}, the best{where}"
    if b.get("state") == "behind":
        return f"{b['name']} at {tip}{where} is behind the best {str(b.get('want'))[:7]}: {b.get('reason')}"
    return f"{b['name']} at {tip}: {b.get('reason')}; the next run measures it as the new base"

"""``autoresearch logs``: the journal as one readable line per record (the session, each experiment's
phases with their results, waits, stops, failed proposals), the last N, then new ones as they come."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def line(record: dict[str, Any]) -> str:
    """``2026-12-02 16:40:01  #3 finished  ok  val_bpb 1.234567  12.3s`` (raw fields for unknown kinds)."""
    when = str(record.get("at") or "")[:19].replace("T", " ")
    kind = str(record.get("type"))
    text = _PHASES.get(str(record.get("phase")), _generic)(record) if kind == "phase" else (
        _OTHERS.get(kind, _generic)(record))
    return f"{when:<19}  {text}".rstrip()


def _num(value: Any, digits: int = 6) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def _exp(r: dict[str, Any], what: str) -> str:
    lane = f" lane {r['lane']}" if isinstance(r.get("lane"), int) and r["lane"] else ""
    return f"#{r.get('n')} {what}{lane}"


def _proposed(r: dict[str, Any]) -> str:
    kind = "baseline" if r.get("baseline") else f"by {r.get('agent') or 'agent'}"
    return f"{_exp(r, 'proposed')}  {kind}: {_one_line(r.get('description'))}"


def _finished(r: dict[str, Any]) -> str:
    metric = "" if r.get("metric") is None else f"  metric {_num(r.get('metric'))}"
    claimed = "" if r.get("claimed") is None or r.get("metric") is not None else f"  claims {_num(r['claimed'])}"
    detail = f"  ({_one_line(r['detail'])})" if r.get("detail") else ""
    return f"{_exp(r, 'finished')}  {r.get('cause')}{metric}{claimed}  {_num(r.get('wall_s'), 1)}s{detail}"


def _evaluated(r: dict[str, Any]) -> str:
    flag = "  claim far from evaluation" if r.get("claim_flag") else ""
    return f"{_exp(r, 'evaluated')}  {r.get('eval_cause')}  metric {_num(r.get('metric'))}{flag}"


def _recorded(r: dict[str, Any]) -> str:
    why = f" ({r['reason']})" if r.get("reason") else ""
    conf = "" if r.get("confidence") is None else f"  {_num(r['confidence'], 1)}σ"
    best = "" if r.get("best_metric") is None else f"  best {_num(r['best_metric'])}"
    return f"{_exp(r, str(r.get('status')))}{why}{conf}{best}  {_one_line(r.get('row_description'))}".rstrip()


_PHASES: dict[str, Callable[[dict[str, Any]], str]] = {
    "proposed": _proposed,
    "committed": lambda r: f"{_exp(r, 'committed')}  {str(r.get('commit'))[:7]}",
    "running": lambda r: _exp(r, "running"),
    "finished": _finished,
    "evaluated": _evaluated,
    "checked": lambda r: f"{_exp(r, 'checked')}  {'ok' if r.get('checks_ok') else 'failed'} ({r.get('check_cause')})",
    "recorded": _recorded,
}

_OTHERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "session": lambda r: f"session {r.get('tag')} started on {r.get('branch')} at {str(r.get('base'))[:7]}",
    "stop": lambda r: f"stopped: {r.get('reason')} (exit {r.get('exit_code', 0)})",
    "wait": lambda r: (f"waiting for the {r['what']}: {_one_line(r.get('reason'))}" if r.get("what")
                       else "wait over"),
    "usage": lambda r: f"proposal failed{'' if r.get('n') is None else ' at #' + str(r['n'])}: "
                       f"{_one_line(r.get('error'))}",
    "agent": lambda r: f"agent state updated ({', '.join(sorted(r.get('state') or {}))})",
    "draft": lambda r: f"draft {r.get('id')} queued: {_one_line(r.get('description'))}",
    "draft_drop": lambda r: f"draft {r.get('id')} dropped: {r.get('reason')}",
    "confirm_drop": lambda r: f"confirmation of #{r.get('candidate')} dropped: {r.get('reason')}",
}


def _generic(r: dict[str, Any]) -> str:
    shown = {k: v for k, v in r.items() if k not in ("at", "content", "handle")}
    return json.dumps(shown, sort_keys=True)[:300]


def _one_line(text: Any, limit: int = 200) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _records(data: bytes) -> Iterator[dict[str, Any]]:
    for raw in data.splitlines():
        try:
            record = json.loads(raw)
        except ValueError:
            continue  # a torn line from a crash
        if isinstance(record, dict):
            yield record


def last_lines(path: Path, count: int | None) -> tuple[list[str], int]:
    """The last ``count`` lines (all for None) and the offset after the last complete record."""
    data = path.read_bytes() if path.exists() else b""
    complete = data.rfind(b"\n") + 1
    lines = [line(r) for r in _records(data[:complete])]
    return (lines if count is None else lines[-count:] if count else []), complete


def follow(
    path: Path, offset: int, emit: Callable[[str], None], stop: threading.Event, interval_s: float = 0.5,
) -> None:
    """Print each record appended after ``offset`` until ``stop`` is set. A journal that is replaced (a new
    session archived this one) ends the follow with a note."""
    identity = _identity(path)
    while not stop.wait(interval_s):
        now = _identity(path)
        if now != identity or (path.exists() and path.stat().st_size < offset):
            emit("(the journal was replaced: a new session started; `autoresearch sessions` lists them)")
            return
        if now is None:
            continue
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
        complete = data.rfind(b"\n") + 1
        for record in _records(data[:complete]):
            emit(line(record))
        offset += complete


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino

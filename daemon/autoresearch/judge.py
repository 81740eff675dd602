"""Pure functions that read a run's log and decide keep, discard or crash."""

from __future__ import annotations

import math
import re
from typing import Literal


def last_value(log_text: str, name: str) -> float | None:
    """The value of the last ``^<name>:`` line; None if absent, unparsable, NaN or infinite."""
    pattern = re.compile(rf"^{re.escape(name)}:[ \t]*(\S+)", re.MULTILINE)
    matches = pattern.findall(log_text)
    if not matches:
        return None
    try:
        value = float(matches[-1])
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def is_better(value: float, best: float, direction: str) -> bool:
    """Strictly better, direction-aware: a tie is not an improvement."""
    return value < best if direction == "min" else value > best


def crash_reason(cause: str, metric: float | None, metric_name: str) -> str | None:
    """Why a run counts as a crash, or None if it produced a usable metric."""
    if cause != "ok":
        return cause
    if metric is None:
        return f"no finite {metric_name}"
    return None


def decide(cause: str, metric: float | None, best: float | None, direction: str) -> str:
    if cause != "ok" or metric is None:
        return "crash"
    if best is None or is_better(metric, best, direction):
        return "keep"
    return "discard"


def memory_gb(measured_gb: float | None, log_text: str) -> float:
    """NVML/container measurement if any, else the script's own ``peak_vram_mb``, else 0.0."""
    if measured_gb is not None:
        return measured_gb
    mb = last_value(log_text, "peak_vram_mb")
    return 0.0 if mb is None else mb / 1024


Lineage = Literal["current", "rebase", "stale", "merge-conflict"]


def lineage(metric: float | None, parent_metric: float | None, parent_is_best: bool, merges: bool | None,
            direction: str, threshold: float = 0.0) -> Lineage:
    """Where a finished run stands when other lanes may have moved the best while it trained.

    ``current``: its parent is still the best, so the normal keep rule decides. Otherwise: a run that
    beats its own parent by more than ``threshold`` is re-applied onto the best (``rebase``: a new
    experiment, measured before it can be kept) when its change merges cleanly (``merges``), else it is
    a ``merge-conflict`` discard; a run that does not beat its parent is ``stale`` (discard). A rebase
    is never a keep by itself: only the rebased commit's own measurement can make it one."""
    if parent_is_best:
        return "current"
    if metric is None or parent_metric is None:
        return "stale"
    gain = parent_metric - metric if direction == "min" else metric - parent_metric
    if gain <= threshold:
        return "stale"
    return "rebase" if merges else "merge-conflict"

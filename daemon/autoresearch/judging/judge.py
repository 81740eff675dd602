"""Pure functions: read a run's metric; the keep rule itself is ``decision.decide`` (re-exported here).

``decide(run, best, noise, policy)`` is the one keep rule (no git, no runner, no clock); see
``decision`` for the looks, the screen and the sequential confirmation, and ``research`` for the
facts it is fed from the runs (the daemon's journal or ``bench/yield.py``'s simulation).
"""

from __future__ import annotations

import math
import re

from autoresearch.judging.decision import (
    MEMORY_MARGIN,
    RERUN_CAUSES,
    Action,
    Best,
    Candidate,
    Lineage,
    Policy,
    Verdict,
    decide,
    lineage,
)

__all__ = ["MEMORY_MARGIN", "RERUN_CAUSES", "Action", "Best", "Candidate", "Lineage", "Policy", "Verdict",
           "crash_reason", "decide", "last_value", "lineage", "memory_gb"]


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


def crash_reason(cause: str, metric: float | None, metric_name: str) -> str | None:
    """Why a run counts as a crash, or None if it produced a usable metric."""
    if cause != "ok":
        return cause
    if metric is None:
        return f"no finite {metric_name}"
    return None


def memory_gb(measured_gb: float | None, log_text: str) -> float:
    """NVML/container measurement if any, else the script's own ``peak_vram_mb``, else 0.0."""
    if measured_gb is not None:
        return measured_gb
    mb = last_value(log_text, "peak_vram_mb")
    return 0.0 if mb is None else mb / 1024

"""Pure functions that read a run's log and decide keep, discard or crash."""

from __future__ import annotations

import math
import re


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

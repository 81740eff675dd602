"""Pure functions: read a run's metric, and decide what a finished run means for the branch.

``decide(run, best, sigma, policy)`` is the one keep rule (no git, no runner, no clock): the same
inputs always give the same verdict. For ``min`` (``max`` mirrors it), with gain = best mean − run
mean and k the run commit's measurements:

1. a crash, a metric outside ``metric_bounds`` (``implausible``), memory over ``max_memory_gb``
   (``memory``) or failed checks (``checks``) is never kept;
2. gain > z·σ·√(1/k + 1/m), m the best's runs it is compared with → keep; a first measurement is
   first confirmed (``confirm_keeps``): the best runs again, then the candidate, and only runs of
   the best made since the candidate's first run count (the load drifts);
3. a shorter target (fewer lines) or clearly less memory, not worse by more than σ → keep
   (``simplification`` / ``less memory``);
4. 0 < gain ≤ that → re-run the same way while k < ``max_repeats``, unless it adds more than
   ``max_added_lines`` or needs clearly more memory; then the mean decides;
5. otherwise → discard.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

Action = Literal["keep", "discard", "crash", "remeasure"]
MEMORY_MARGIN = 0.05
"""Memory differences under 5 % (or 0.05 GB) are measurement noise, not a win or a loss."""
RERUN_CAUSES = ("interrupted", "docker")
"""Causes that are not the script's fault: a confirmation that ended so is simply run again."""


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


def memory_gb(measured_gb: float | None, log_text: str) -> float:
    """NVML/container measurement if any, else the script's own ``peak_vram_mb``, else 0.0."""
    if measured_gb is not None:
        return measured_gb
    mb = last_value(log_text, "peak_vram_mb")
    return 0.0 if mb is None else mb / 1024


@dataclass(frozen=True)
class Policy:
    direction: Literal["min", "max"] = "min"
    z: float = 2.0
    max_repeats: int = 3
    """Most measurements of one candidate (its first run plus confirmations)."""
    bounds: tuple[float, float] = (1e-6, 1e6)
    max_memory_gb: float | None = None
    max_added_lines: int | None = None
    confirm_keeps: bool = True
    """A first measurement beyond noise is re-run next to a fresh run of the best before it is kept
    (the machine's load drifts: a best measured an hour ago is no fair comparison)."""


@dataclass(frozen=True)
class Candidate:
    """A finished run, with every measurement its commit has so far (this run's last)."""

    commit: str
    cause: str
    """``ok`` or why the run (or its evaluation) failed."""
    metrics: tuple[float, ...]
    memory_gb: float = 0.0
    lines: int = 0
    checks_ok: bool | None = None
    """None: checks not run (yet, or not configured)."""
    confirmation: bool = False


@dataclass(frozen=True)
class Best:
    commit: str
    metrics: tuple[float, ...]
    memory_gb: float = 0.0
    lines: int = 0

    @property
    def mean(self) -> float:
        return sum(self.metrics) / len(self.metrics)


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    gain: float | None = None
    threshold: float | None = None
    confidence: float | None = None
    """gain ÷ σ (None without a noise estimate)."""
    mean: float | None = None

    @property
    def status(self) -> str:
        """The row's status in the seed's vocabulary (a re-run's first row is a discard until confirmed)."""
        if self.action == "remeasure":
            return "crash" if self.reason in RERUN_CAUSES else "discard"
        return self.action


def decide(run: Candidate, best: Best | None, sigma: float, policy: Policy) -> Verdict:
    if run.cause != "ok" or not run.metrics:
        if run.confirmation and run.cause in RERUN_CAUSES:
            return Verdict("remeasure", run.cause)  # not the script's fault: measure it again
        return Verdict("crash", run.cause if run.cause != "ok" else "no metric")
    latest = run.metrics[-1]
    lo, hi = policy.bounds
    if not lo <= latest <= hi:
        return Verdict("crash", "implausible")
    if policy.max_memory_gb is not None and run.memory_gb > policy.max_memory_gb:
        return Verdict("discard", "memory")
    if run.checks_ok is False:
        return Verdict("discard", "checks")
    mean = sum(run.metrics) / len(run.metrics)
    if best is None:
        return Verdict("keep", "first", mean=mean)
    if run.commit == best.commit:
        return Verdict("keep", "repeat", mean=mean)
    sign = 1.0 if policy.direction == "min" else -1.0
    gain = sign * (best.mean - mean)
    # The noise of a difference of two means: k candidate runs against m runs of the best.
    threshold = policy.z * sigma * math.sqrt(1 / len(run.metrics) + 1 / len(best.metrics))
    confidence = gain / sigma if sigma > 0 else None

    def verdict(action: Action, reason: str) -> Verdict:
        return Verdict(action, reason, gain=gain, threshold=threshold, confidence=confidence, mean=mean)

    within = gain >= -sigma
    less_memory = run.memory_gb < best.memory_gb * (1 - MEMORY_MARGIN) - MEMORY_MARGIN
    more_memory = run.memory_gb > best.memory_gb * (1 + MEMORY_MARGIN) + MEMORY_MARGIN
    if gain > threshold:
        if policy.confirm_keeps and sigma > 0 and len(run.metrics) == 1:
            return verdict("remeasure", "confirming a keep")  # a fresh run of the best, then this again
        return verdict("keep", "better")
    if within and run.lines < best.lines:
        return verdict("keep", "simplification")
    if within and less_memory:
        return verdict("keep", "less memory")
    if gain <= 0:
        return verdict("discard", "not better")
    if more_memory:
        return verdict("discard", "within noise, more memory")
    if policy.max_added_lines is not None and run.lines - best.lines > policy.max_added_lines:
        return verdict("discard", "within noise, adds too many lines")
    if len(run.metrics) < policy.max_repeats:
        return verdict("remeasure", "within noise")
    return verdict("discard", "within noise")

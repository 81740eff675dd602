"""The keep rule on one candidate (pure: no git, no runner, no clock, no journal).

``decide(run, best, noise, policy)``: the same inputs always give the same verdict. For ``min``
(``max`` mirrors it), a candidate C made on the best P is judged in *looks*:

- look 0, C's first (selecting) measurement x against P's measurements (m of them), se0 = σ·√(1 + 1/m):
  gain > t(1 − alpha·0.2, dof)·se0 → keep at once (clearly in); gain ≤ z·se0 → discard (clearly out, or
  a simplification / less-memory keep, below); else → confirm (``remeasure``).
- look j ≥ 1, on the j confirmation *pairs* only (a fresh run of P, then one of C, on the same lane; the
  selecting measurement is left out, so the winner's curse does not count): d = the mean of P − C over
  the pairs, T = d / (σ·√(2/j)). T > the look's t quantile → keep; T ≤ ``futility`` or j = L − 1 →
  discard; else one more pair.

A change with no true gain is kept with probability ≤ alpha over all its looks: look 0 spends
alpha·0.2; the confirmation looks are independent of the screen (they exclude the selecting run), so
given that a no-op passes the screen with probability p = P(t > z), they share (alpha·0.8) ÷ p through one
constant boundary over the L − 1 = ``max_repeats`` − 1 looks that a no-op's pairs cross at any look with
exactly that probability (Pocock's group-sequential design, ``stats.sequential_bound``; it replaced an
even Bonferroni split, which ignored that look j's pairs include look j − 1's). dof is σ's degrees of
freedom: a σ from 2 dof counts for what it is. With no σ yet while re-measurements that will give one are
in flight (``Candidate.noise_due``: lanes ran ahead of the baseline's repeats), a gain is confirmed, not
kept (such a change reaches the confirmations with probability 1/2, not p: a small excess for the first
few changes of a night with lanes). A run whose parent is no longer the best (lanes: another lane kept
meanwhile) is never kept: where it would be, it is re-applied onto the best (``rebase``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

from autoresearch.judging.stats import Noise, sequential_bound, t_cdf, t_quantile

Action = Literal["keep", "discard", "crash", "remeasure", "rebase"]
Lineage = Literal["current", "rebase", "stale", "merge-conflict"]
MEMORY_MARGIN = 0.05
"""Memory differences under 5 % (or 0.05 GB) are measurement noise, not a win or a loss."""
RERUN_CAUSES = ("interrupted", "docker", "cancelled", "node_fail", "preempted", "boot_fail")
"""Causes that are not the script's fault (a kill, the engine, a Slurm job someone else cancelled or whose
node kept failing): a confirmation or baseline that ended so is simply run again."""


@dataclass(frozen=True)
class Policy:
    direction: Literal["min", "max"] = "min"
    z: float = 0.5
    """The screen: a first measurement must gain more than z·se₀ to be worth a confirmation."""
    max_repeats: int = 3
    """Looks per candidate: its first run, then up to max_repeats − 1 confirmation pairs."""
    bounds: tuple[float, float] = (1e-6, 1e6)
    max_memory_gb: float | None = None
    max_added_lines: int | None = None
    confirm_keeps: bool = True
    """False: a first measurement beyond z·se₀ keeps at once (no confirmation; the pre-sequential rule)."""
    alpha: float = 0.05
    """The most probability that a change with no true gain is kept, over all its looks."""
    futility: float = 0.0
    """A confirmation look whose T is at most this stops: the fresh pairs show no gain."""


@dataclass(frozen=True)
class Candidate:
    """A finished run, with every measurement its commit has so far (the first run's first)."""

    commit: str
    cause: str
    """``ok`` or why the run (or its evaluation) failed."""
    metrics: tuple[float, ...]
    memory_gb: float = 0.0
    lines: int = 0
    checks_ok: bool | None = None
    """None: checks not run (yet, or not configured)."""
    confirmation: bool = False
    parent: str | None = None
    """The commit the change was made on (None: the baseline, a repeat)."""
    parent_metrics: tuple[float, ...] = ()
    """The parent's measurements (it was the best when the run was proposed)."""
    merges: bool | None = None
    """The run's change merges cleanly onto the best (``git merge-file``); None: not tried."""
    pairs: tuple[tuple[float, float], ...] = ()
    """Confirmation pairs (parent's fresh run, candidate's run), each pair from one lane."""
    noise_due: bool = False
    """No σ yet, but re-measurements in flight will give one: a gain is confirmed, not kept at once (the
    seed's rule, keep any gain, is only for a night that measures no noise: ``noise.repeats`` = 0)."""


@dataclass(frozen=True)
class Best:
    commit: str
    metrics: tuple[float, ...]
    memory_gb: float = 0.0
    lines: int = 0
    anchor: float | None = None
    """The mean of the last keep that was a gain (not a simplification): simplifications must stay
    within σ of it, so a chain of them cannot drift the metric worse over a night."""

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
        if self.action == "rebase":
            return "discard"  # the change goes on as a new experiment; this run never becomes a keep
        return self.action


FIRST_LOOK_SHARE = 0.2
"""The part of alpha spent on keeping a first measurement at once; the rest goes to the confirmations."""
MAX_LOOK_ALPHA = 0.25


def critical(policy: Policy, dof: int, look: int = 0) -> float:
    """The t quantile of one look. Look 0 spends alpha·``FIRST_LOOK_SHARE``. The confirmation looks
    exclude the selecting run, so they are independent of the screen: a no-op reaches them with
    probability p = P(T > z) and they may spend (alpha − look 0's share) ÷ p over the L − 1 looks, through
    one constant boundary that a no-op's pairs cross at any look with exactly that probability (Pocock's
    group-sequential design; the looks' statistics share pairs, so Bonferroni's split was conservative).
    Each look's tail is turned into the t quantile of σ's dof."""
    nu = dof if dof > 0 else math.inf
    first = policy.alpha * (FIRST_LOOK_SHARE if policy.max_repeats > 1 else 1.0)  # one look: all of alpha
    if look == 0:
        return t_quantile(1.0 - first, nu)
    reach = max(1.0 - t_cdf(policy.z, nu), 1e-9)
    looks = max(policy.max_repeats - 1, 1)
    spend = min((policy.alpha - first) / reach, MAX_LOOK_ALPHA * looks, 0.5)
    # Nudged down, then to 3 significant digits (a few cached bounds serve a night's varying dof).
    spend = float(f"{spend * 0.9995:.3g}")
    tail = 1.0 - NormalDist().cdf(sequential_bound(spend, looks))
    return t_quantile(1.0 - min(tail, MAX_LOOK_ALPHA), nu)


def decide(run: Candidate, best: Best | None, noise: Noise | float, policy: Policy) -> Verdict:
    est = noise if isinstance(noise, Noise) else Noise(noise, 0 if noise == 0 else 1_000_000)
    failed = _failed(run, policy)
    if failed is not None:
        return failed
    mean = sum(run.metrics) / len(run.metrics)
    if best is None:
        return Verdict("keep", "first", mean=mean)
    if run.commit == best.commit:
        return Verdict("keep", "repeat", mean=mean)
    overtaken = run.parent is not None and run.parent != best.commit
    if overtaken and not run.pairs:
        return _overtaken(run, mean, est.sigma, policy)
    verdict = _confirmation(run, mean, est, policy) if run.pairs else _first_look(run, best, mean, est, policy)
    if overtaken and verdict.action == "keep":  # confirmed against its own parent: re-applied, never kept
        where = "rebase" if run.merges else "merge-conflict"
        return Verdict("rebase" if run.merges else "discard", where, verdict.gain, verdict.threshold,
                       verdict.confidence, mean)
    return verdict


def _failed(run: Candidate, policy: Policy) -> Verdict | None:
    if run.cause != "ok" or not run.metrics:
        if run.confirmation and run.cause in RERUN_CAUSES:
            return Verdict("remeasure", run.cause)  # not the script's fault: measure it again
        return Verdict("crash", run.cause if run.cause != "ok" else "no metric")
    lo, hi = policy.bounds
    if not lo <= run.metrics[-1] <= hi:
        return Verdict("crash", "implausible")
    if policy.max_memory_gb is not None and run.memory_gb > policy.max_memory_gb:
        return Verdict("discard", "memory")
    if run.checks_ok is False:
        return Verdict("discard", "checks")
    return None


def _first_look(run: Candidate, best: Best, mean: float, est: Noise, policy: Policy) -> Verdict:
    sign = 1.0 if policy.direction == "min" else -1.0
    sigma = est.sigma
    gain = sign * (best.mean - mean)
    se = sigma * math.sqrt(1 / len(run.metrics) + 1 / len(best.metrics))
    clear = critical(policy, est.dof) * se
    screen = policy.z * se

    def verdict(action: Action, reason: str, threshold: float) -> Verdict:
        confidence = gain / sigma if sigma > 0 else None
        return Verdict(action, reason, gain=gain, threshold=threshold, confidence=confidence, mean=mean)

    if sigma > 0 and gain > clear:
        return verdict("keep", "better", clear)
    if est.dof == 0 and run.noise_due and gain > 0 and policy.confirm_keeps and policy.max_repeats > 1:
        # No σ yet, but re-measurements in flight will give one (other lanes ran ahead of the baseline's
        # repeats): the gain is confirmed on pairs like any other, not kept on the seed's rule.
        return verdict("remeasure", "confirming a keep", 0.0)
    confirmable = sigma > 0 and policy.confirm_keeps
    if gain > screen and confirmable and policy.max_repeats > 1:
        return verdict("remeasure", "confirming a keep", clear)  # a fresh run of the best, then this
    if gain > screen and not confirmable:
        return verdict("keep", "better", screen)
    anchor_ok = best.anchor is None or sign * (best.anchor - mean) >= -sigma
    within = gain >= -sigma and anchor_ok
    if within and run.lines < best.lines:
        return verdict("keep", "simplification", screen)
    if within and run.memory_gb < best.memory_gb * (1 - MEMORY_MARGIN) - MEMORY_MARGIN:
        return verdict("keep", "less memory", screen)
    if gain <= 0:
        return verdict("discard", "not better", screen)
    if run.memory_gb > best.memory_gb * (1 + MEMORY_MARGIN) + MEMORY_MARGIN:
        return verdict("discard", "within noise, more memory", screen)
    if policy.max_added_lines is not None and run.lines - best.lines > policy.max_added_lines:
        return verdict("discard", "within noise, adds too many lines", screen)
    return verdict("discard", "within noise", screen)


def _confirmation(run: Candidate, mean: float, est: Noise, policy: Policy) -> Verdict:
    """Look j on the j fresh pairs alone (the selecting first run does not count)."""
    sign = 1.0 if policy.direction == "min" else -1.0
    j = len(run.pairs)
    d = sum(sign * (ref - cand) for ref, cand in run.pairs) / j
    sigma = est.sigma
    se = sigma * math.sqrt(2 / j)
    clear = critical(policy, est.dof, j) * se
    confidence = d / sigma if sigma > 0 else None
    if d > clear:
        return Verdict("keep", "better", d, clear, confidence, mean)
    out = sigma > 0 and d / se <= policy.futility
    if out or j >= policy.max_repeats - 1 or sigma == 0:
        return Verdict("discard", "within noise", d, clear, confidence, mean)
    return Verdict("remeasure", "within noise", d, clear, confidence, mean)


def _overtaken(run: Candidate, mean: float, sigma: float, policy: Policy) -> Verdict:
    """Another lane's keep landed while the run trained: it is judged against its own parent, and at best
    re-applied onto the best (``rebase``), never kept itself."""
    parent = sum(run.parent_metrics) / len(run.parent_metrics) if run.parent_metrics else None
    m = max(len(run.parent_metrics), 1)
    threshold = policy.z * sigma * math.sqrt(1 / len(run.metrics) + 1 / m)
    where = lineage(mean, parent, False, run.merges, policy.direction, threshold)
    gain = None if parent is None else (parent - mean if policy.direction == "min" else mean - parent)
    return Verdict("rebase" if where == "rebase" else "discard", where, gain=gain, threshold=threshold,
                   confidence=None if gain is None or sigma <= 0 else gain / sigma, mean=mean)


def lineage(metric: float | None, parent_metric: float | None, parent_is_best: bool, merges: bool | None,
            direction: str, threshold: float = 0.0) -> Lineage:
    """Where a finished run stands when other lanes may have moved the best while it trained.

    ``current``: its parent is still the best, so ``decide`` (the keep rule) applies. Otherwise: a run
    that beats its own parent by more than ``threshold`` is re-applied onto the best (``rebase``: a new
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

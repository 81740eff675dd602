"""Small-sample statistics for the keep rule (pure; the standard library only).

- ``t_quantile``: Student's t quantile, from its CDF (the regularized incomplete beta, by Lentz's
  continued fraction) and bisection: exact to ~1e-10, no scipy needed.
- ``sequential_bound``: the constant boundary c on K looks at a random walk's z statistics (Z_j = S_j/√j) that
  a no-op crosses at any look with probability alpha (Pocock's design, computed exactly by integrating the
  walk's density on a grid, not bounded by Bonferroni's alpha/K).
- ``pooled_sigma``: the pooled standard deviation of groups of repeated measurements, robust to one
  outlying run (a cold first run, a load spike): that run is left out when it lies far outside the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

OUTLIER_T = 5.0
"""A run whose residual exceeds this many σ of the *other* runs is an outlier (one at most is dropped).
Normal noise reaches 5σ about once in 3.5 million runs; a cold start or a load spike easily does."""
OUTLIER_P = 0.05
"""...and only where normal noise would make the most extreme of the runs look that far with probability
under this: the residual over the others' σ is t-distributed with their few dof (at 1 dof a normal run
passes 5 "σ" 13 % of the time, and dropping it left σ from the two closest runs of a baseline's three)."""


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, dof: float) -> float:
    """P(T ≤ t) for Student's t with ``dof`` degrees of freedom (``inf``: the normal)."""
    if math.isinf(dof):
        return 0.5 * math.erfc(-t / math.sqrt(2.0))
    tail = 0.5 * _betainc(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, dof: float) -> float:
    """The t with P(T ≤ t) = p (0 < p < 1), for ``dof`` > 0 degrees of freedom."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if dof <= 0:
        raise ValueError(f"t_quantile: dof must be positive, got {dof}")
    if p < 0.5:
        return -t_quantile(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:  # the t's tails are heavy at 1-2 dof: widen until bracketed
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, dof) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


_GRID = 0.05
"""The grid step (in units of one look's increment) of the walk's density: crossing probabilities to ~1e-4."""


def crossing(c: float, looks: int) -> float:
    """P(Z_j > c at some j ≤ looks) for Z_j = S_j/√j, S a sum of j independent N(0, 1) (a no-op's pairs)."""
    normal = NormalDist()
    total = 1.0 - normal.cdf(c)
    if looks <= 1:
        return total
    low = -8.0 * math.sqrt(looks)
    xs = [low + i * _GRID for i in range(int((c - low) / _GRID) + 1)]
    density = [normal.pdf(x) * _GRID for x in xs]  # S_1 below the boundary, as point masses
    for j in range(2, looks + 1):
        edge = c * math.sqrt(j)
        total += sum(f * (1.0 - normal.cdf(edge - x)) for x, f in zip(xs, density, strict=True))
        if j == looks:
            break
        ys = [low + i * _GRID for i in range(int((edge - low) / _GRID) + 1)]
        kernel = [normal.pdf(k * _GRID) * _GRID for k in range(len(ys) + len(xs))]
        offset = round((xs[0] - low) / _GRID)
        density = [sum(f * kernel[abs(i - (offset + k))] for k, f in enumerate(density)) for i in range(len(ys))]
        xs = ys
    return total


@lru_cache(maxsize=512)
def sequential_bound(alpha: float, looks: int) -> float:
    """The constant z boundary over ``looks`` looks that a no-op crosses with probability ``alpha`` (bisection
    between one look's quantile and Bonferroni's)."""
    normal = NormalDist()
    lo, hi = normal.inv_cdf(1.0 - alpha), normal.inv_cdf(1.0 - alpha / looks)
    if looks <= 1:
        return lo
    for _ in range(30):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if crossing(mid, looks) > alpha else (lo, mid)
        if hi - lo < 1e-4:
            break
    return hi


@dataclass(frozen=True)
class Noise:
    """A pooled noise estimate: σ and its degrees of freedom (0 dof: no estimate, σ = 0)."""

    sigma: float
    dof: int
    dropped: int | None = None
    """The index (in the flattened input) of the one outlier left out, if any."""


def _ss(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values)


def pooled_sigma(groups: Sequence[Sequence[float]]) -> Noise:
    """Pooled σ over the groups (each: one commit's measurements); the one run whose leave-one-out
    residual is over ``OUTLIER_T`` σ of the rest (and beyond what normal noise gives the most extreme of them
``OUTLIER_P`` of the time) is left out. Only groups of 3+ can show which of their
    runs is the odd one (in a pair, either could be)."""
    sizable = [g for g in groups if len(g) > 1]
    squares = sum(_ss(g) for g in sizable)
    dof = sum(len(g) - 1 for g in sizable)
    if dof == 0:
        return Noise(0.0, 0)
    worst: tuple[float, int, float] | None = None  # (score, flat index, squares without it)
    start = 0
    for values in groups:
        if len(values) >= 3:
            n, total = len(values), sum(values)
            mean = total / n
            for j, v in enumerate(values):
                # Leaving v out lowers the group's squares by (v − mean)²·n/(n − 1).
                without = squares - (v - mean) ** 2 * n / (n - 1)
                if without <= 1e-300:
                    continue
                # The residual of a new run against the mean of the others: variance σ²(1 + 1/(n − 1)).
                others = (total - v) / (n - 1)
                score = abs(v - others) / math.sqrt(without / (dof - 1) * (1 + 1 / (n - 1)))
                if worst is None or score > worst[0]:
                    worst = (score, start + j, without)
        start += len(values)
    candidates = sum(len(g) for g in groups if len(g) >= 3)
    if worst is not None and worst[0] > OUTLIER_T and worst[0] > t_quantile(1 - OUTLIER_P / (2 * candidates), dof - 1):
        return Noise(math.sqrt(worst[2] / (dof - 1)), dof - 1, dropped=worst[1])
    return Noise(math.sqrt(squares / dof), dof)

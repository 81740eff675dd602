"""Research yield: the true gain a keep rule buys per run, in a simulated night driven through the daemon's
own decision core (``research.verdict`` and ``research.pending``), against karpathy's greedy rule and
#560's 2σ floor.

    python3 bench/yield.py [--landscape FILE] [--runs N] [--seeds S] [--smoke]

Each proposal's true effect is drawn from a mixture (good, neutral, bad changes); kept effects add up
along the branch; each measurement is the commit's true value + N(0, σ) (+ ``drift_per_run`` * the run's
index, + ``cold_first_run`` on the night's first run). σ is given relative to the typical good effect
(the |mean| of the most improving component). With L lanes, L runs are in flight at once, each lasting
0.9-1.1 units, and results arrive in completion order; a run whose parent stopped being the best is
re-applied onto the best (a rebase) where its rule would have kept it. Policies, at equal run counts:

- ``greedy``: keep if lower than the best's measurement (karpathy's program.md; no noise estimate);
- ``floor2sigma``: the baseline runs 3 times once, then keep if the gain is over 2σ of that estimate;
- ``ours``: the daemon's defaults (screen, sequential confirmation pairs, t quantiles, alpha split).

A false keep is a keep whose true effect is not an improvement. One ``yield:`` line per point, then the
summary lines (``lanes_yield_ratio``: ours' gain per run with 8 lanes ÷ with 1, summed over the grid).
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from autoresearch.judging import research
from autoresearch.judging.decision import Policy
from autoresearch.judging.noise import policy as noise_policy
from autoresearch.judging.research import Facts, Run
from autoresearch.judging.stats import Noise
from autoresearch.ops.config import NoiseSettings

DEFAULT: dict[str, Any] = {
    "baseline": 1.0, "direction": "min", "sigmas": [0.1, 0.5, 1.0, 2.0],
    # Karpathy-like: 15 % real gains, 15 % changes that do nothing, the rest hurt (a few of them by
    # little enough that noise hides it, and some of those are tiny true gains).
    "effects": [{"p": 0.15, "mean": -0.01, "sd": 0.003}, {"p": 0.15, "mean": 0.0, "sd": 0.0},
                {"p": 0.70, "mean": 0.015, "sd": 0.01}],
    "runs": 125, "seeds": 20, "drift_per_run": 0.0, "cold_first_run": 0.0,
}
POLICIES = ("greedy", "floor2sigma", "ours")
LANES = (1, 8)


@dataclass(frozen=True)
class Landscape:
    baseline: float
    direction: str
    sigmas: tuple[float, ...]
    effects: tuple[tuple[float, float, float], ...]
    runs: int
    seeds: int
    drift_per_run: float = 0.0
    cold_first_run: float = 0.0

    @property
    def good(self) -> float:
        """The typical good effect's size: |mean| of the most improving component."""
        sign = 1.0 if self.direction == "min" else -1.0
        return abs(min(sign * m for _, m, _ in self.effects))


def load(path: Path | None) -> Landscape:
    raw = dict(DEFAULT)
    if path is not None:
        try:
            given = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            sys.exit(f"yield: cannot read the landscape {path}: {exc}")
        unknown = set(given) - set(DEFAULT)
        if unknown:
            sys.exit(f"yield: unknown landscape keys {sorted(unknown)} (known: {sorted(DEFAULT)})")
        raw.update(given)
    effects = tuple((float(e["p"]), float(e["mean"]), float(e.get("sd", 0.0))) for e in raw["effects"])
    if raw["direction"] not in ("min", "max") or not effects or abs(sum(p for p, _, _ in effects) - 1) > 1e-6:
        sys.exit("yield: the landscape needs direction min|max and effects whose p sum to 1")
    return Landscape(float(raw["baseline"]), raw["direction"], tuple(float(s) for s in raw["sigmas"]), effects,
                     int(raw["runs"]), int(raw["seeds"]), float(raw.get("drift_per_run") or 0.0),
                     float(raw.get("cold_first_run") or 0.0))


@dataclass
class Night:
    """One simulated night: the shell around the core (numbering, lanes, the branch, true values)."""

    land: Landscape
    policy_name: str
    lanes: int
    sigma: float
    rng: random.Random
    policy: Policy = field(init=False)
    repeats: int = 2
    truth: dict[str, float] = field(default_factory=dict)
    effect: dict[str, float] = field(default_factory=dict)
    done: list[Run] = field(default_factory=list)
    open: dict[int, Run] = field(default_factory=dict)
    rebases: list[tuple[str, str]] = field(default_factory=list)
    """Rebased commits waiting for a lane, with their parent (the best when their verdict came)."""
    started: int = 0
    fixed: Noise | None = None
    settings: NoiseSettings = field(default_factory=NoiseSettings)

    def __post_init__(self) -> None:
        s = self.settings
        ours = noise_policy(s, "min" if self.land.direction == "min" else "max", bounds=(-1e18, 1e18))
        if self.policy_name == "greedy":
            self.policy, self.repeats, self.fixed = replace(ours, z=0.0, confirm_keeps=False), 0, Noise(0.0, 0)
        elif self.policy_name == "floor2sigma":
            self.policy = replace(ours, z=2.0, confirm_keeps=False)
        else:
            self.policy, self.repeats = ours, s.repeats

    def runs(self) -> list[Run]:
        return self.done + [self.open[n] for n in sorted(self.open)]

    def best(self) -> Run | None:
        return research.best(self.done)

    def commit(self, parent: str | None, effect: float) -> str:
        name = f"c{len(self.truth)}"
        self.truth[name] = (self.truth[parent] if parent else self.land.baseline) + effect
        self.effect[name] = effect
        return name

    def draw(self) -> float:
        u, acc = self.rng.random(), 0.0
        for p, mean, sd in self.land.effects:
            acc += p
            if u <= acc:
                return self.rng.gauss(mean, sd) if sd > 0 else mean
        return self.land.effects[-1][1]

    def next_run(self, lane: int) -> Run | None:
        n = self.started
        top = self.best()
        if top is None:
            if n > 0:
                return None  # nothing starts before the baseline has its verdict
            return Run(n, self.commit(None, 0.0), None, done=False, lane=lane, baseline=True, description="baseline")
        if self.rebases:  # the scheduler's first priority: a rebased commit, made when its verdict came
            commit, parent = self.rebases.pop(0)
            return Run(n, commit, None, done=False, lane=lane, parent=parent, description=f"change {n} (rebased)")
        todo = next((m for m in research.pending(self.runs(), self.repeats) if m.lane in (None, lane)), None)
        if todo is not None:
            return Run(n, todo.commit, None, done=False, lane=lane, parent=todo.parent or top.commit,
                       confirm_of=todo.of, for_candidate=todo.for_candidate, description=todo.description)
        if research.calibrating(self.runs(), self.repeats):
            return None  # as the scheduler: no change starts before the baseline's repeats measured σ
        return Run(n, self.commit(top.commit, self.draw()), None, done=False, lane=lane, parent=top.commit,
                   description=f"change {n}")

    def measure(self, run: Run) -> float:
        value = self.truth[run.commit] + self.rng.gauss(0.0, self.sigma) + self.land.drift_per_run * run.n
        return value + (self.land.cold_first_run if run.n == 0 else 0.0)

    def finish(self, run: Run) -> None:
        del self.open[run.n]
        run = replace(run, metric=self.measure(run))
        if self.policy_name == "floor2sigma" and self.fixed is None and len(self.done) >= 1 + self.repeats:
            self.fixed = research.noise(self.done)  # measured once, then frozen
        v = research.verdict(self.runs(), run, Facts(merges=True), self.policy, self.fixed)
        self.done.append(replace(run, done=True, decision=v.action, status=v.status, reason=v.reason))
        top = self.best()
        if v.action == "rebase" and top is not None:  # re-applied onto the best of that moment (coordinator.rebase)
            self.rebases.append((self.commit(top.commit, self.effect[run.commit]), top.commit))

    def simulate(self) -> dict[str, float]:
        clock: list[tuple[float, int, int]] = []  # (finish time, lane, n)
        free, now = list(range(self.lanes)), 0.0
        while self.started < self.land.runs or clock:
            while free and self.started < self.land.runs:
                run = self.next_run(free[0])
                if run is None:
                    break
                lane = free.pop(0)
                self.open[run.n] = run
                self.started += 1
                heapq.heappush(clock, (now + self.rng.uniform(0.9, 1.1), lane, run.n))
            now, lane, n = heapq.heappop(clock)
            self.finish(self.open[n])
            free.append(lane)
        return self.score()

    def score(self) -> dict[str, float]:
        sign = 1.0 if self.land.direction == "min" else -1.0
        top = self.best()
        gain = 0.0 if top is None else sign * (self.land.baseline - self.truth[top.commit])
        changes = [r for r in self.done if not r.baseline and r.confirm_of is None and r.for_candidate is None]
        keeps = [r for r in self.done if r.status == "keep" and r.reason not in ("first", "repeat")]
        false = sum(1 for r in keeps if sign * self.effect[r.commit] >= 0.0)
        verdicts = sum(1 for r in changes if r.decision != "remeasure") + sum(
            1 for r in self.done if r.confirm_of is not None and r.for_candidate is None and r.decision != "remeasure"
            and not self._baseline(r))
        return {"gain": gain, "false": false, "keeps": len(keeps), "runs": len(self.done),
                "verdicts": max(verdicts, 1)}

    def _baseline(self, run: Run) -> bool:
        return any(r.n == run.confirm_of and r.baseline for r in self.done)


def point(land: Landscape, policy: str, lanes: int, noise: float, settings: NoiseSettings) -> dict[str, float]:
    total = {"gain": 0.0, "false": 0.0, "keeps": 0.0, "runs": 0.0, "verdicts": 0.0}
    for seed in range(land.seeds):
        rng = random.Random(f"{lanes}-{noise}-{seed}")  # the same seed for every policy at a point
        got = Night(land, policy, lanes, noise * land.good, rng, settings=settings).simulate()
        for key in total:
            total[key] += got[key]
    return {k: v / land.seeds for k, v in total.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--landscape", type=Path, help="JSON: baseline, direction, sigmas, effects, runs, seeds, ...")
    parser.add_argument("--runs", type=int, help="runs per night (default: the landscape's)")
    parser.add_argument("--seeds", type=int, help="nights per point (default: the landscape's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds): that the bench runs at all")
    parser.add_argument("--noise", default="{}",
                        help='ours\' noise settings as JSON (default: the daemon\'s), e.g. {"alpha": 0.05}')
    args = parser.parse_args()
    try:
        settings = NoiseSettings(**json.loads(args.noise))
    except ValueError as exc:
        sys.exit(f"yield: --noise: {exc}")
    land = load(args.landscape)
    if args.smoke:
        land = replace(land, runs=24, seeds=2)
    land = replace(land, runs=args.runs or land.runs, seeds=args.seeds or land.seeds)
    results: dict[tuple[str, int, float], dict[str, float]] = {}
    for noise in land.sigmas:
        for lanes in LANES:
            for policy in POLICIES:
                r = results[(policy, lanes, noise)] = point(land, policy, lanes, noise, settings)
                print(f"yield: policy={policy} lanes={lanes} noise={noise:g} true_gain={r['gain']:.6g} "
                      f"false_keeps={r['false']:.3g} keeps={r['keeps']:.3g} runs={r['runs']:.4g} "
                      f"runs_per_verdict={r['runs'] / r['verdicts']:.3f}", flush=True)
    summary(land, results)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b > 0 else ("inf" if a > 0 else "nan")


def summary(land: Landscape, results: dict[tuple[str, int, float], dict[str, float]]) -> None:
    for noise in land.sigmas:
        ours, greedy = results[("ours", 1, noise)]["gain"], results[("greedy", 1, noise)]["gain"]
        print(f"yield_ratio_vs_greedy: noise={noise:g} value={ratio(ours, greedy)}")
    for noise in land.sigmas:
        ours, floor = results[("ours", 1, noise)]["gain"], results[("floor2sigma", 1, noise)]["gain"]
        print(f"yield_ratio_vs_floor2sigma: noise={noise:g} value={ratio(ours, floor)}")
    rates = [r["false"] / r["keeps"] for (p, _, _), r in results.items() if p == "ours" and r["keeps"] > 0]
    print(f"false_keep_rate: policy=ours value={max(rates, default=0.0):.4f}")
    per_run = {lanes: sum(results[("ours", lanes, s)]["gain"] / results[("ours", lanes, s)]["runs"]
                          for s in land.sigmas) for lanes in LANES}
    print(f"lanes_yield_ratio: lanes=8 value={ratio(per_run[8], per_run[1])}")


if __name__ == "__main__":
    main()

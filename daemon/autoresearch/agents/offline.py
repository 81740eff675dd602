"""The offline agent: an Optuna (TPE) sweep over the target's numeric UPPER_CASE constants.

Each proposal changes one or two constants of the current best file and nothing else. The study is
rebuilt from the journal's history on every proposal (ask/tell over an in-memory study), so a restart
resumes it exactly; the search space is fixed at the first proposal and kept in the agent state.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.agents.base import HistoryEntry, Proposal, ProposalContext
from autoresearch.agents.constants import find_constants, format_value, rewrite
from autoresearch.config import OfflineSettings, Settings
from autoresearch.errors import ProposalRejected

MAX_ASKS = 40


@dataclass
class OfflineAgent:
    settings: OfflineSettings
    name: str = "offline"

    @classmethod
    def from_config(cls, settings: Settings, repo: Path) -> OfflineAgent:
        return cls(settings=settings.offline)

    def propose(self, ctx: ProposalContext) -> Proposal:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        current = {n: c.value for n, c in find_constants(ctx.best_content).items() if n not in self.settings.exclude}
        space = ctx.agent_state.get("space") or self._space(current)
        names = [n for n in space if n in current]
        if not names:
            raise ProposalRejected(f"{ctx.target} has no numeric UPPER_CASE constants to sweep")
        study = self._study(ctx, space)
        tried = {hashlib.sha256(ctx.best_content.encode()).hexdigest()} | _tried_hashes(ctx.history)
        rng = random.Random(self.settings.seed * 1_000_003 + ctx.n)
        for _ in range(MAX_ASKS):
            trial = study.ask({n: _distribution(space[n]) for n in names})
            chosen = _pick_changes(trial.params, current, names, rng)
            texts = {n: format_value(trial.params[n], current[n]) for n in chosen}
            texts = {n: t for n, t in texts.items() if t != format_value(current[n], current[n])}
            if not texts:
                continue
            content = rewrite(ctx.best_content, texts)
            if hashlib.sha256(content.encode()).hexdigest() in tried:
                continue
            params = {n: c.value for n, c in find_constants(content).items() if n in names}
            description = ", ".join(f"{n} {format_value(current[n], current[n])} -> {texts[n]}" for n in sorted(texts))
            return Proposal(
                content=content, description=description, meta={"params": params}, agent_state={"space": space}
            )
        raise ProposalRejected("the sweep found no untried setting of the constants")

    def _space(self, current: dict[str, int | float]) -> dict[str, dict[str, Any]]:
        spread = self.settings.spread
        space: dict[str, dict[str, Any]] = {}
        for name, value in current.items():
            kind = "int" if isinstance(value, int) else "float"
            if value == 0:
                low, high, log = 0.0, (4.0 if kind == "int" else 0.5), False
            else:
                a, b = value / spread, value * spread
                low, high, log = min(a, b), max(a, b), value > 0
            if kind == "int":
                low, high = math.floor(low), max(math.ceil(high), int(value) + 1)
                low = max(low, 1) if log else low
            space[name] = {"kind": kind, "low": low, "high": high, "log": log}
        return space

    def _study(self, ctx: ProposalContext, space: dict[str, dict[str, Any]]) -> Any:
        import optuna

        sampler = optuna.samplers.TPESampler(
            seed=self.settings.seed + ctx.n, n_startup_trials=self.settings.startup_trials
        )
        study = optuna.create_study(direction="minimize" if ctx.direction == "min" else "maximize", sampler=sampler)
        for entry in ctx.history:
            params = entry.meta.get("params")
            if entry.metric is None or entry.status == "crash" or not isinstance(params, dict):
                continue
            inside = {n: v for n, v in params.items() if n in space and _contains(space[n], v)}
            if len(inside) != len(params):
                continue  # a value outside the fixed space cannot be told to TPE
            study.add_trial(
                optuna.trial.create_trial(
                    params=inside,
                    distributions={n: _distribution(space[n]) for n in inside},
                    value=entry.metric,
                )
            )
        return study


def _distribution(spec: dict[str, Any]) -> Any:
    import optuna

    if spec["kind"] == "int":
        return optuna.distributions.IntDistribution(int(spec["low"]), int(spec["high"]), log=bool(spec["log"]))
    return optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]), log=bool(spec["log"]))


def _contains(spec: dict[str, Any], value: Any) -> bool:
    return isinstance(value, int | float) and spec["low"] <= value <= spec["high"]


def _pick_changes(
    suggested: dict[str, Any], current: dict[str, int | float], names: list[str], rng: random.Random
) -> list[str]:
    """One or two constants per experiment, so each result says something about a cause."""
    differing = [n for n in names if suggested[n] != current[n]]
    k = min(len(differing), rng.choice((1, 1, 2)))
    return rng.sample(differing, k)


def _tried_hashes(history: tuple[HistoryEntry, ...]) -> set[str]:
    return {str(e.meta["content_sha256"]) for e in history if "content_sha256" in e.meta}

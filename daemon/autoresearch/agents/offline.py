"""The offline agent: an Optuna (TPE) sweep over the target's numeric UPPER_CASE constants.

Each proposal changes one or two constants of the current best file and nothing else. The study is
rebuilt from the journal's history on every proposal (ask/tell over an in-memory study), so a restart
resumes it exactly; the search space is fixed at the first proposal and kept in the agent state, and
narrowed by the crashes in the history (see ``space``). A proposal that would fail one of the file's own
top-level asserts between constants (``asserts``), or repeat a combination of values that crashed, is
not made. Left alone: constants named in
``offline.exclude``, those whose line says ``# autoresearch: fixed``, and those that only feed what the
script prints (see ``uses``).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.agents import space as sp
from autoresearch.agents.asserts import ReadModule, failed_asserts, structural_names
from autoresearch.agents.base import HistoryEntry, Proposal, ProposalContext
from autoresearch.agents.constants import Constant, find_constants, literal, rewrite
from autoresearch.agents.uses import display_only
from autoresearch.errors import ProposalRejected
from autoresearch.ops.config import OfflineSettings, Settings

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
        constants = self.tunable(ctx.best_content, (ctx.metric,))
        current = {n: c.value for n, c in constants.items()}
        space = ctx.agent_state.get("space")
        if ctx.agent_state.get("space_rules") != sp.RULES_VERSION or not isinstance(space, dict):
            structural = structural_names(ctx.best_content) | {n for n, c in constants.items() if c.power_form}
            space = sp.build_space(current, self.settings.spread, structural)
        live = sp.narrowed(space, ctx.history)
        names = [n for n in live if n in current and sp.has_room(live[n])]
        if not names:
            raise ProposalRejected(f"{ctx.target} has no numeric UPPER_CASE constants to sweep")
        study = self._study(ctx, live, names)
        tried = {hashlib.sha256(ctx.best_content.encode()).hexdigest()} | _tried_hashes(ctx.history)
        tried |= {hashlib.sha256(f.content.encode()).hexdigest() for f in ctx.in_flight if f.content is not None}
        rng = random.Random(self.settings.seed * 1_000_003 + ctx.n)
        state = {"space": space, "space_rules": sp.RULES_VERSION}
        valid = Validity.of(ctx)
        for _ in range(MAX_ASKS):
            trial = study.ask({n: sp.distribution(live[n]) for n in names})
            values = {n: sp.from_param(live[n], trial.params[n]) for n in names}
            texts = {n: literal(constants[n], values[n]) for n in _pick_changes(values, current, names, rng)}
            texts = {n: t for n, t in texts.items() if t != literal(constants[n], current[n])}
            if not texts:
                continue
            content = rewrite(ctx.best_content, texts)
            if hashlib.sha256(content.encode()).hexdigest() in tried or not valid(content):
                continue
            return self._proposal(content, constants, names, texts, state)
        raise ProposalRejected("the sweep found no untried setting of the constants")

    def tunable(self, source: str, judged: tuple[str, ...] = ()) -> dict[str, Constant]:
        """The constants the sweep may change: not excluded, not marked fixed, not display-only (a
        constant printed in the ``judged`` metric's own line is the research, not a display)."""
        found = find_constants(source)
        shown = display_only(source, set(found), judged)
        return {n: c for n, c in found.items() if n not in self.settings.exclude and not c.fixed and n not in shown}

    @staticmethod
    def _proposal(
        content: str, before: dict[str, Constant], names: list[str], texts: dict[str, str], state: dict[str, Any]
    ) -> Proposal:
        after = find_constants(content)
        params = {n: after[n].value for n in names}
        changed = {n: [before[n].value, after[n].value] for n in texts}
        old = {n: literal(before[n], before[n].value) for n in texts}
        description = ", ".join(f"{n} {old[n]} -> {texts[n]}" for n in sorted(texts))
        return Proposal(
            content=content, description=description, meta={"params": params, "changed": changed}, agent_state=state
        )

    def _study(self, ctx: ProposalContext, live: dict[str, sp.Spec], names: list[str]) -> Any:
        import optuna

        # constant_liar: trials still running (other lanes, queued drafts) count as if they had scored badly,
        # so parallel asks spread out instead of piling onto the same point.
        sampler = optuna.samplers.TPESampler(
            seed=self.settings.seed + ctx.n, n_startup_trials=self.settings.startup_trials, constant_liar=True
        )
        study = optuna.create_study(direction="minimize" if ctx.direction == "min" else "maximize", sampler=sampler)
        for entry in ctx.history:
            params = entry.meta.get("params")
            if entry.metric is None or entry.status == "crash" or not isinstance(params, dict):
                continue
            inside = {n: sp.to_param(live[n], params.get(n)) for n in names}
            if any(v is None for v in inside.values()):
                continue  # a value outside today's space cannot be told to TPE
            study.add_trial(
                optuna.trial.create_trial(
                    params=inside,
                    distributions={n: sp.distribution(live[n]) for n in names},
                    value=entry.metric,
                )
            )
        for flight in ctx.in_flight:
            self._tell_running(study, flight.meta.get("params"), live, names)
        return study

    @staticmethod
    def _tell_running(study: Any, params: object, live: dict[str, sp.Spec], names: list[str]) -> None:
        """An experiment in flight, as a RUNNING trial (parallel ask/tell): its result is not in yet."""
        import optuna

        if not isinstance(params, dict):
            return
        inside = {n: sp.to_param(live[n], params.get(n)) for n in names}
        if any(v is None for v in inside.values()):
            return
        study.add_trial(optuna.trial.create_trial(
            params=inside, distributions={n: sp.distribution(live[n]) for n in names},
            state=optuna.trial.TrialState.RUNNING,
        ))


@dataclass(frozen=True)
class Validity:
    """Whether a proposed file may be run: it breaks none of the asserts the best passes, and it is not
    a combination of values that crashed."""

    read_module: ReadModule
    known_failures: frozenset[str]
    barred: tuple[dict[str, int | float], ...]

    @classmethod
    def of(cls, ctx: ProposalContext) -> Validity:
        read = module_reader(ctx.repo)
        return cls(read, frozenset(failed_asserts(ctx.best_content, read)), tuple(sp.barred(ctx.history)))

    def __call__(self, content: str) -> bool:
        if set(failed_asserts(content, self.read_module)) - self.known_failures:
            return False
        values = {n: c.value for n, c in find_constants(content).items()}
        return not any(all(values.get(n) == v for n, v in combo.items()) for combo in self.barred)


def module_reader(repo: Path) -> ReadModule:
    """Reads ``<name>.py`` at the top of the repo (the target's ``from prepare import ...``)."""
    root = repo.resolve()

    def read(name: str) -> str | None:
        if not name.isidentifier():
            return None  # a package path (a.b) or anything odd: not followed
        path = (root / f"{name}.py").resolve()
        if path.parent != root or not path.is_file():
            return None
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    return read


def _pick_changes(
    suggested: dict[str, int | float], current: dict[str, int | float], names: list[str], rng: random.Random
) -> list[str]:
    """One or two constants per experiment, so each result says something about a cause."""
    differing = [n for n in names if suggested[n] != current[n]]
    k = min(len(differing), rng.choice((1, 1, 2)))
    return rng.sample(differing, k)


def _tried_hashes(history: tuple[HistoryEntry, ...]) -> set[str]:
    return {str(e.meta["content_sha256"]) for e in history if "content_sha256" in e.meta}

"""Keeps under concurrency: a run whose parent stopped being the best while it trained.

``judge.lineage`` decides (pure); this module gathers its inputs (the parent's metric, a 3-way merge of
the target with ``git merge-file``) and, for a clean rebase, journals the merged target as a new
experiment: queued first (an open experiment), on the current best, measured before it can be kept.
The new experiment is journaled *before* the old one's ``recorded`` (write-ahead), and a restart that
judges the old one again finds it (``rebase_of``), so a crash never makes two.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import structlog

from autoresearch import judge, noise
from autoresearch.config import Settings
from autoresearch.drafts import now_when
from autoresearch.journal import Experiment, Journal, JournalState
from autoresearch.workspace import Workspace

log = structlog.get_logger("autoresearch.loop")


@dataclass(frozen=True)
class Placement:
    lineage: judge.Lineage
    rebased_as: int | None = None


def place(settings: Settings, workspace: Workspace, journal: Journal, exp: Experiment,
          best: Experiment | None) -> Placement:
    """Where ``exp`` (finished, successful) stands; journals the rebased experiment if there is one."""
    state = journal.load()
    if best is None or exp.baseline or exp.parent == best.commit or exp.commit == best.commit:
        return Placement("current")
    parent = _parent_metric(state, exp.parent)
    merged = _merge(settings, workspace, exp, best)
    verdict = judge.lineage(exp.metric, parent, False, merged is not None, settings.direction)
    if verdict != "rebase" or merged is None:
        log.info("experiment.not_rebased", n=exp.n, lineage=verdict, parent=exp.parent[:7], best=best.commit[:7])
        return Placement(verdict)
    return Placement("rebase", _journal_rebase(journal, exp, best, merged))


def _parent_metric(state: JournalState, parent: str) -> float | None:
    """The mean of the parent commit's measurements (it was a best, so it has at least one)."""
    values = noise.measurements(state, parent)
    return sum(values) / len(values) if values else None


def _merge(settings: Settings, workspace: Workspace, exp: Experiment, best: Experiment) -> str | None:
    base = workspace.read(exp.parent, settings.target)
    ours = workspace.read(best.commit, settings.target)
    merged = workspace.merge_file(base, ours, exp.content)
    return None if merged is None or merged == ours else merged


def _journal_rebase(journal: Journal, exp: Experiment, best: Experiment, content: str) -> int:
    with journal.lock:  # find-or-number and append as one step
        state = journal.load()
        existing = next((e.n for e in state.ordered() if e.rebase_of == exp.n), None)
        if existing is not None:
            return existing  # journaled before a crash: judged again, not rebased twice
        n = state.next_n()
        journal.append({
            "type": "phase", "n": n, "phase": "proposed", "parent": best.commit, "baseline": False,
            "description": f"{exp.description} (rebased)", "content": content,
            "content_sha256": hashlib.sha256(content.encode()).hexdigest(), "agent": exp.agent,
            "meta": {**exp.meta, "rebased_from": exp.commit}, "usage": {}, "propose_s": 0.0,
            "rebase_of": exp.n, "when": now_when(), "seed": n,
        })
    log.info("experiment.rebased", n=exp.n, rebased_as=n, onto=best.commit[:7])
    return n

"""Retention of run outputs (``keep_outputs``): after each recorded row, the outputs (``runs/<n>/output``)
of recorded experiments other than the best's and the last N recorded ones are deleted. Logs stay; so do
the outputs of experiments not recorded yet (a lane still needs them to evaluate). Safe to repeat: the
set to keep is derived from the journal alone."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import structlog

from autoresearch.journal.store import JournalState

log = structlog.get_logger("autoresearch.retention")


def to_prune(state: JournalState, keep: int | None) -> list[int]:
    """The recorded experiments whose outputs go: not among the last ``keep`` recorded, not the best's."""
    if keep is None:
        return []
    recorded = state.completed()
    best = state.best()
    kept = {e.n for e in recorded[len(recorded) - keep:]} if keep else set()
    if best is not None:
        kept |= {e.n for e in recorded if e.commit == best.commit}  # the best and its confirmations
    return [e.n for e in recorded if e.n not in kept]


def prune_outputs(state: JournalState, keep: int | None, output_dir: Callable[[int], Path]) -> list[int]:
    """Delete what ``to_prune`` names (already gone: skipped); the experiments whose output was removed."""
    removed = []
    for n in to_prune(state, keep):
        path = output_dir(n)
        if path.exists() or path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(n)
    if removed:
        log.info("retention.pruned", outputs=removed, keep=keep)
    return removed

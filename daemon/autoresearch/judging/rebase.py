"""Keeps under concurrency: a run whose parent stopped being the best while it trained.

``decision.decide`` decides (pure: ``Candidate.parent``, ``parent_metrics``, ``merges``, and for a
confirmation its pairs against its own parent; see ``decision.lineage``); this module makes the 3-way
merge of the target (``git merge-file``) and, for a ``rebase`` verdict, the merged target becomes a new
experiment (``Coordinator.rebase``, the one place that numbers experiments): queued first (an open
experiment), on the current best, measured before it can be kept. The new experiment is journaled
*before* the old one's ``recorded`` (write-ahead), and a restart that judges the old one again finds it
(``rebase_of``), so a crash never makes two.
"""

from __future__ import annotations

from autoresearch.git.workspace import Workspace
from autoresearch.journal.store import Experiment
from autoresearch.ops.config import Settings


def merged_onto(settings: Settings, workspace: Workspace, exp: Experiment, best: Experiment) -> str | None:
    """``exp``'s change to the target re-applied onto ``best`` (3-way, ``git merge-file``); None on a
    conflict or when the best already holds it."""
    base = workspace.read(exp.parent, settings.target)
    ours = workspace.read(best.commit, settings.target)
    merged = workspace.merge_file(base, ours, exp.content)
    return None if merged is None or merged == ours else merged


def overtaken(exp: Experiment, best: Experiment | None) -> bool:
    """The run edits a commit that stopped being the best while it trained (only possible with lanes)."""
    return (best is not None and not exp.baseline and exp.measure_commit is None
            and exp.parent != best.commit and exp.commit != best.commit)

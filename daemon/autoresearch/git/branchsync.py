"""The session branch ``autoresearch/<tag>`` and the user's checkouts of it.

The daemon works from the journal and the object store alone (commits through a private index, runs from
``git archive`` snapshots), so it never needs a work tree of its own and never writes the user's. The
branch is a *view* of the journal: it should point at ``want_of(state)`` (the best; before a best, the
session's base; while a foreign commit is being measured, that commit). ``sync`` brings it there:

- the branch is an ancestor of where it should be (a keep, or a move a kill interrupted): it moves forward,
  by compare-and-swap when no work tree has it checked out; where one has, by a fast-forward of that work
  tree when it is clean, and not at all when it is dirty (the checkout is *behind*, and ``status`` says why);
- the branch holds commits the daemon did not make (``foreign``): nothing moves; the loop adopts the tip as
  the new base (``Coordinator.reconcile``), so the commit stays on the branch and every later keep builds on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import structlog

from autoresearch.errors import GitBusy, RepoError
from autoresearch.git.workspace import Workspace
from autoresearch.journal.store import JournalState

log = structlog.get_logger("autoresearch.branch")

SyncKind = Literal["ok", "behind", "foreign"]


@dataclass(frozen=True)
class BranchSync:
    kind: SyncKind
    tip: str | None
    """Where the branch is now (after any move)."""
    want: str | None
    """Where the journal says it should be."""
    checkout: Path | None = None
    """The work tree that has the branch checked out, if any."""
    reason: str | None = None
    """Why a checkout was left behind."""

    def as_dict(self) -> dict[str, object]:
        return {"state": self.kind, "tip": self.tip, "want": self.want,
                "checkout": None if self.checkout is None else str(self.checkout), "reason": self.reason}


def want_of(state: JournalState) -> str | None:
    """The commit the session branch should point at, from the journal alone."""
    adopting = [e for e in state.open() if e.adopted]
    if adopting:
        return adopting[-1].adopted
    best = state.best()
    if best is not None:
        return best.commit
    return None if state.session is None else state.session.base


def inspect(ws: Workspace, branch: str, state: JournalState) -> BranchSync:
    """Where the branch stands against the journal, changing nothing (for ``status``)."""
    tip, want = ws.branch_sha(branch), want_of(state)
    outs = ws.checkouts(branch)
    checkout = outs[0] if outs else None
    path = None if checkout is None else checkout.path
    if want is None or tip == want:
        return BranchSync("ok", tip, want, path)
    if tip is not None and not ws.is_ancestor(tip, want) and not _ours(state, tip):
        return BranchSync("foreign", tip, want, path, f"{branch} has commits autoresearch did not make")
    if checkout is not None and checkout.dirty:
        return BranchSync("behind", tip, want, path, _dirty_reason(checkout.path, checkout.dirty))
    return BranchSync("behind", tip, want, path, "not moved yet (the daemon moves it at its next step)")


def sync(ws: Workspace, branch: str, state: JournalState) -> BranchSync:
    """Move the branch forward to where the journal says, where that loses nothing (see the module doc)."""
    tip, want = ws.branch_sha(branch), want_of(state)
    if want is None or tip == want:
        return BranchSync("ok", tip, want)
    if tip is not None and not ws.is_ancestor(tip, want):
        if not _ours(state, tip):
            log.warning("branch.foreign", branch=branch, tip=tip[:7], best=want[:7])
            return BranchSync("foreign", tip, want, reason=f"{branch} has commits autoresearch did not make")
        return _advance(ws, branch, want, tip, forward=False)
    return _advance(ws, branch, want, tip)


def _ours(state: JournalState, sha: str) -> bool:
    """Whether ``sha`` is one of the session's experiment commits (kept under refs/autoresearch/<tag>/<n>):
    versions before lanes committed on the branch itself, so a kill could leave it at a discarded one."""
    return any(e.committed is not None and e.commit == sha for e in state.ordered())


def _advance(ws: Workspace, branch: str, want: str, tip: str | None, forward: bool = True) -> BranchSync:
    outs = ws.checkouts(branch)
    if not outs:
        if ws.move_branch(branch, want, tip):
            log.info("branch.moved", branch=branch, to=want[:7])
            return BranchSync("ok", want, want)
        return BranchSync("behind", ws.branch_sha(branch), want, reason="moved by someone else meanwhile")
    checkout = outs[0]
    if checkout.dirty and forward and ws.holds_tree_of(checkout, want) and ws.move_branch(branch, want, tip):
        log.info("branch.fast_forward_finished", branch=branch, checkout=str(checkout.path), to=want[:7])
        return BranchSync("ok", want, want, checkout.path)  # a fast-forward a kill cut before its ref update
    if checkout.dirty:
        reason = _dirty_reason(checkout.path, checkout.dirty)
        log.warning("branch.behind", branch=branch, checkout=str(checkout.path), reason=reason)
        return BranchSync("behind", tip, want, checkout.path, reason)
    try:
        (ws.fast_forward if forward else ws.reset_checkout)(checkout, want)
    except (RepoError, GitBusy) as exc:  # e.g. an untracked file where the keep adds one, the user's git busy
        reason = f"git refused to fast-forward it: {str(exc).splitlines()[-1]}"
        log.warning("branch.behind", branch=branch, checkout=str(checkout.path), reason=reason)
        return BranchSync("behind", ws.branch_sha(branch), want, checkout.path, reason)
    log.info("branch.fast_forwarded", branch=branch, checkout=str(checkout.path), to=want[:7])
    return BranchSync("ok", want, want, checkout.path)


def _dirty_reason(path: Path, dirty: tuple[str, ...]) -> str:
    shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
    return (f"{path} has uncommitted changes ({shown}); stash or commit them: a clean checkout follows the "
            f"best, a commit becomes the session's new base (measured first)")

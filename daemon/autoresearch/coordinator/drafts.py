"""Proposals drafted ahead of the lanes: the agent thinks while the GPUs train.

The drafter asks the agent and hands what it returns to the coordinator (``hand_over``, i.e.
``Coordinator.add_draft``), which journals it as a ``draft`` record at once, so a kill -9 loses no
proposal that was paid for. The drafter never numbers experiments or writes the journal itself. A lane
that frees up takes the oldest draft (``Coordinator.take_draft``): if a keep landed since the draft was
made, its edit is first re-applied onto the new best with a 3-way merge of the target (``git
merge-file``), so every experiment's parent is the best when it starts; a draft whose edit conflicts is
dropped (``draft_drop``, reason ``merge-conflict``) without costing any GPU time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from autoresearch.agents.base import Agent, HistoryEntry, InFlight, Proposal, ProposalContext, check_python
from autoresearch.errors import AgentError, AgentFatal
from autoresearch.git.workspace import Workspace
from autoresearch.journal.store import Experiment, Journal, JournalState
from autoresearch.judging import noise
from autoresearch.ops.config import Settings
from autoresearch.runners.base import log_tail
from autoresearch.sessions.session import Session

log = structlog.get_logger("autoresearch.loop")

RECENT_ERRORS = 5
"""Failed proposals' errors shown to the agent once it escalates."""


@dataclass
class Drafter:
    settings: Settings
    session: Session
    workspace: Workspace
    journal: Journal
    agent: Agent
    on_failed: Callable[[int, AgentError], None]
    """Journals a failed proposal and pauses (the loop's back-off)."""
    hand_over: Callable[[Proposal, str, str, float], int]
    """Queues a proposal (proposal, parent, agent, seconds it took): ``Coordinator.add_draft``."""

    def draft(self, n: int) -> None:
        """Ask the agent for one proposal against the current best and hand it over (or say why not).
        ``n`` only labels the agent's logs and scratch folder; the experiment is numbered when taken."""
        state = self.journal.load()
        best = state.best()
        if best is None:
            return
        t0 = time.monotonic()
        ctx = self.context(state, n, best)
        try:
            proposal = self.agent.propose(ctx)
            if proposal.content == ctx.best_content:
                raise AgentError("the proposal does not change the target")
            check_python(proposal.content, self.settings.target)
        except AgentFatal:
            raise
        except AgentError as exc:
            self.on_failed(n, exc)
            return
        self.hand_over(proposal, best.commit, self.agent.name, time.monotonic() - t0)

    def context(self, state: JournalState, n: int, best: Experiment) -> ProposalContext:
        done = state.completed()
        s = self.settings
        crash_streak = _trailing(done, lambda e: e.status == "crash")
        last = done[-1] if done else None
        crash_log = None
        if last is not None and last.status == "crash" and crash_streak <= s.max_crash_fixes:
            crash_log = log_tail(self.session.run_dir(last.n) / "run.log", s.anthropic.max_log_chars)
        failed = state.failed_in_a_row
        escalated = len(failed) >= s.proposals.max_failed_in_a_row
        return ProposalContext(
            n=n,
            repo=self.session.repo,
            target=s.target,
            readonly=tuple(s.readonly),
            metric=s.metric,
            direction=s.direction,
            best_commit=best.commit,
            best_content=self.workspace.read(best.commit, s.target),
            best_metric=noise.best_mean(state),
            history=tuple(history_entry(e) for e in done),
            last_crash_log=crash_log,
            crash_streak=crash_streak,
            stale_streak=_trailing(done, lambda e: e.status != "keep"),
            agent_state=dict(state.agent_state),
            runs_dir=self.session.run_dir(0).parent,
            recent_errors=tuple(r.error for r in failed[-RECENT_ERRORS:]) if escalated else (),
            in_flight=in_flight(state),
        )


def in_flight(state: JournalState) -> tuple[InFlight, ...]:
    """Open experiments (in lanes) and queued drafts, oldest first."""
    running = [InFlight(description=e.description, parent=e.parent, lane=e.lane, n=e.n, content=e.content,
                        meta=dict(e.meta)) for e in state.open()]
    queued = [InFlight(description=d.description, parent=d.parent, lane=None, content=d.content,
                       meta=dict(d.meta)) for d in state.drafts.values()]
    return tuple(running + queued)


def _trailing(done: list[Experiment], pred: Callable[[Experiment], bool]) -> int:
    count = 0
    for exp in reversed(done):
        if not pred(exp):
            break
        count += 1
    return count


def history_entry(exp: Experiment) -> HistoryEntry:
    meta: dict[str, Any] = dict(exp.meta)
    meta["content_sha256"] = exp.content_sha256
    return HistoryEntry(
        n=exp.n,
        commit=exp.commit,
        status=exp.status,
        metric=exp.metric,
        description=exp.description,
        cause=exp.cause,
        meta=meta,
        memory_gb=exp.memory_gb,
    )

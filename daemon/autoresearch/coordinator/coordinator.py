"""The one writer: the only code that numbers experiments, creates their refs and journals new ones.

Every lane, the drafter and the loop's thread hand their results here. One lock (the journal's) orders
all of it: a number is read from the journal and its ``proposed`` record appended as one step, so two
proposals can never get the same ``n`` (a second ``proposed`` for an ``n`` would silently replace the
first in the fold). The same lock is the judging lock (``recording.record``): a verdict, its ``recorded``
record and the branch move happen against the best of that instant. Nothing slow runs under it: lanes
train, evaluate and check outside, and come back with their outcome.

Write-ahead still holds: each record is appended (and fsynced) before the side effect it announces,
except an experiment ref, which is set just before its ``committed`` record (a kill in between leaves
a ref that the resumed ``commit`` step sets again to the same sha).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import structlog

from autoresearch.agents.base import Proposal
from autoresearch.coordinator.scheduler import Job
from autoresearch.git import branchsync
from autoresearch.git.workspace import Workspace
from autoresearch.journal.records import AgentRecord, Committed, ConfigRecord, DraftDropRecord, DraftRecord, UsageFields
from autoresearch.journal.store import Experiment, Journal, JournalState, content_sha256
from autoresearch.judging.research import Measure
from autoresearch.ops.config import Settings
from autoresearch.ops.safetext import one_line
from autoresearch.sessions import settings as session_config
from autoresearch.sessions.session import Session

log = structlog.get_logger("autoresearch.loop")


@dataclass
class Coordinator:
    settings: Settings
    session: Session
    workspace: Workspace
    journal: Journal

    @property
    def lock(self) -> threading.RLock:
        """The one writer lock: numbering, appends, refs, verdicts and branch moves."""
        return self.journal.lock

    def new_experiment(self, *, content: str, lane: int | None = None, **fields: Any) -> int:
        """Number a new experiment and journal its ``proposed`` record, as one step; returns its number."""
        with self.lock:
            n = self.journal.load().next_n()
            self.journal.proposed(n, content=content, lane=lane, **fields)
        return n

    def journal_job(self, job: Job, state: JournalState, lane: int) -> int | None:
        """The experiment ``job`` will drive in ``lane``: an open one keeps its number, a new one is numbered
        and journaled here; None when a draft was dropped instead. Call it holding ``lock`` with ``state``
        loaded under it, so the job was chosen from what is journaled."""
        if job.kind == "open":
            return job.n
        if job.kind == "baseline":
            return self.baseline(lane)
        best = state.best()
        assert best is not None  # the scheduler offers nothing else before a best
        if job.kind == "remeasure":
            assert job.measure is not None
            # A confirmation stays on its candidate's parent (a rebase then merges from there, not from the best).
            return self.remeasure(job.measure, job.measure.parent or best.commit, lane)
        assert job.draft is not None
        return self.take_draft(state.drafts[job.draft], best, lane)

    def pin_measured(self) -> None:
        """The first run pins the settings that decide what is measured (``session_config``)."""
        self.journal.append(ConfigRecord(type="config", measured=session_config.measured(self.settings)))

    def baseline(self, lane: int) -> int:
        head = self.workspace.branch_sha(self.session.branch) or self.workspace.head()
        content = self.workspace.read(head, self.settings.target)
        return self.new_experiment(
            parent=head, baseline=True, description="baseline", content=content, agent="baseline", meta={},
            usage=Proposal(content=content, description="baseline").usage.as_dict(), propose_s=0.0, lane=lane,
        )

    def remeasure(self, todo: Measure, parent: str, lane: int) -> int:
        """A repeat of the baseline or a confirmation: the same commit, run again on another seed."""
        content = self.workspace.read(todo.commit, self.settings.target)
        return self.new_experiment(
            parent=parent, baseline=False, description=todo.description, content=content, agent="judge",
            meta={}, propose_s=0.0, lane=lane, measure_commit=todo.commit, confirm_of=todo.of,
            for_candidate=todo.for_candidate,
        )

    def adopt(self, tip: str) -> int:
        """A commit someone else put on the session branch, measured as the new base."""
        content = self.workspace.read(tip, self.settings.target)
        description = f"adopted {tip[:7]} (a commit on {self.session.branch} autoresearch did not make)"
        n = self.new_experiment(
            parent=tip, baseline=True, adopted=tip, description=description, content=content, agent="user",
            meta={}, usage=Proposal(content=content, description=description).usage.as_dict(), propose_s=0.0,
        )
        log.warning("branch.adopting", n=n, commit=tip[:7], branch=self.session.branch)
        return n

    def rebase(self, exp: Experiment, best: Experiment, content: str) -> int:
        """Journal ``exp``'s change re-applied onto ``best`` (or find the one a crash left); its number."""
        with self.lock:  # find-or-number and append as one step
            state = self.journal.load()
            existing = next((e.n for e in state.ordered() if e.rebase_of == exp.n), None)
            if existing is not None:
                return existing  # journaled before a crash: judged again, not rebased twice
            # A confirmation run (the judge's) re-applies the change it confirmed: name it and credit its agent.
            origin = state.experiments.get(exp.confirm_of, exp) if exp.confirm_of is not None else exp
            n = self.new_experiment(  # no lane: the rebased experiment waits for whichever lane is free
                parent=best.commit, baseline=False, description=f"{origin.description} (rebased)", content=content,
                agent=origin.agent, meta={**origin.meta, "rebased_from": exp.commit}, propose_s=0.0,
                rebase_of=exp.n,
            )
        log.info("experiment.rebased", n=exp.n, rebased_as=n, onto=best.commit[:7])
        return n

    def take_draft(self, draft: DraftRecord, best: Experiment, lane: int) -> int | None:
        """Make the queued draft an experiment on the current best (3-way merged when a keep landed since it
        was drafted); None when it was dropped instead (``draft_drop``)."""
        content, meta = draft.content, dict(draft.meta)
        if draft.parent != best.commit:
            base = self.workspace.read(draft.parent, self.settings.target)
            ours = self.workspace.read(best.commit, self.settings.target)
            merged = self.workspace.merge_file(base, ours, draft.content)
            if merged is None or merged == ours:
                reason = "merge-conflict" if merged is None else "already in the best"
                self.journal.append(DraftDropRecord(type="draft_drop", id=draft.id, reason=reason))
                log.warning("proposal.draft_dropped", draft=draft.id, reason=reason, parent=draft.parent[:7],
                            best=best.commit[:7])
                return None
            content, meta["drafted_on"] = merged, draft.parent
        return self.new_experiment(
            parent=best.commit, baseline=False, description=draft.description, content=content, agent=draft.agent,
            meta=meta, usage=draft.usage.model_dump(), propose_s=draft.propose_s, draft=draft.id, lane=lane,
        )

    def add_draft(self, proposal: Proposal, parent: str, agent: str, propose_s: float) -> int:
        """Queue a drafted proposal (and the agent's state that came with it); returns the draft's id."""
        with self.lock:  # the id is the count of drafts: read and append as one step
            if proposal.agent_state is not None:
                self.journal.append(AgentRecord(type="agent", state=proposal.agent_state))
            draft_id = self.journal.load().draft_ids
            self.journal.append(DraftRecord(
                type="draft", id=draft_id, parent=parent, description=one_line(proposal.description),
                content=proposal.content, agent=agent, content_sha256=content_sha256(proposal.content),
                meta=proposal.meta, usage=UsageFields.model_validate(proposal.usage.as_dict()),
                propose_s=round(propose_s, 3),
            ))
        log.info("proposal.drafted", draft=draft_id, description=proposal.description, parent=parent[:7])
        return draft_id

    def reconcile(self, wait: bool = True) -> JournalState | None:
        """Bring the session branch to the journal's best (``branchsync.sync``). A commit someone else put
        on the branch is adopted: journaled as an open experiment that measures it as the new base (a kill
        before the record adopts it again at the next start; after it, the experiment resumes). Returns
        the state it synced to; None when ``wait`` is False and another writer holds the lock."""
        if not self.lock.acquire(blocking=wait):
            return None
        try:
            state = self.journal.load()
            result = branchsync.sync(self.workspace, self.session.branch, state)
            if result.kind == "foreign" and result.tip is not None and not any(e.adopted for e in state.open()):
                self.adopt(result.tip)
            return state
        finally:
            self.lock.release()

    def committed(self, n: int, sha: str, lane: int | None) -> None:
        """The experiment's ref, then its ``committed`` record (the commit itself is made by the lane: a new
        object through a private index, which no other writer touches)."""
        with self.lock:
            self.workspace.set_ref(self.session.experiment_ref(n), sha)
            self.journal.append(Committed(type="phase", n=n, phase="committed", commit=sha, lane=lane))

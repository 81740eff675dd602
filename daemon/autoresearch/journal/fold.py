"""The fold of the journal's records into typed state: one ``Experiment`` per number, the session, the
agent's memory, failed proposals, waits and stops. ``Journal.load`` (``journal/store.py``) feeds it validated
records; readers use the typed attributes, never raw keys."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from autoresearch.errors import JournalError
from autoresearch.journal.records import (
    AgentRecord,
    Checked,
    Committed,
    ConfigRecord,
    ConfirmDropRecord,
    DraftDropRecord,
    DraftRecord,
    Evaluated,
    Finished,
    Phase,
    PhaseRecord,
    Proposed,
    Record,
    Recorded,
    Running,
    SessionRecord,
    SetupRecord,
    StopRecord,
    UsageFields,
    UsageRecord,
    WaitRecord,
)


@dataclass
class Experiment:
    """The fold of one experiment's phase records, typed. A field of a phase the experiment has not
    reached is a ``JournalError`` (``metric`` is ``None`` until finished)."""

    proposed: Proposed
    phase: Phase = "proposed"
    committed: Committed | None = None
    running: Running | None = None
    finished: Finished | None = None
    evaluated: Evaluated | None = None
    checked: Checked | None = None
    recorded: Recorded | None = None
    times: dict[str, str | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    """Keys of its phase records that no model knows (added by a newer version or another branch)."""

    @property
    def n(self) -> int:
        return self.proposed.n

    @property
    def lane(self) -> int | None:
        """The lane of its latest phase record (None before lanes existed)."""
        for rec in (self.recorded, self.finished, self.running, self.committed, self.proposed):
            if rec is not None and rec.lane is not None:
                return rec.lane
        return None

    @property
    def rebase_of(self) -> int | None:
        return self.proposed.rebase_of

    @property
    def done(self) -> bool:
        return self.phase == "recorded"

    def phase_at(self, phase: Phase) -> str | None:
        """When the experiment entered ``phase`` (None if it has not)."""
        return self.times.get(phase)

    def _missing(self, what: str) -> JournalError:
        return JournalError(f"experiment {self.n} is {self.phase}: its journal has no {what} record yet")

    # proposed
    @property
    def parent(self) -> str:
        return self.proposed.parent

    @property
    def description(self) -> str:
        return self.proposed.description

    @property
    def content(self) -> str:
        return self.proposed.content

    @property
    def when(self) -> str:
        return self.proposed.when

    @property
    def baseline(self) -> bool:
        return self.proposed.baseline

    @property
    def meta(self) -> dict[str, Any]:
        return self.proposed.meta

    @property
    def usage(self) -> UsageFields:
        return self.proposed.usage

    @property
    def content_sha256(self) -> str | None:
        return self.proposed.content_sha256

    @property
    def agent(self) -> str | None:
        return self.proposed.agent

    @property
    def propose_s(self) -> float | None:
        return self.proposed.propose_s

    @property
    def seed(self) -> int | None:
        return self.proposed.seed

    @property
    def measure_commit(self) -> str | None:
        return self.proposed.measure_commit

    @property
    def adopted(self) -> str | None:
        """The foreign commit this experiment measures as the new base (None for the daemon's own)."""
        return self.proposed.adopted

    @property
    def confirm_of(self) -> int | None:
        return self.proposed.confirm_of

    @property
    def for_candidate(self) -> int | None:
        return self.proposed.for_candidate

    # committed, running
    @property
    def commit(self) -> str:
        if self.committed is None:
            raise self._missing("committed")
        return self.committed.commit

    @property
    def handle(self) -> dict[str, Any]:
        if self.running is None:
            raise self._missing("running")
        return self.running.handle

    # finished
    @property
    def outcome(self) -> Finished:
        """How its run ended (the ``finished`` record); ``JournalError`` before that."""
        if self.finished is None:
            raise self._missing("finished")
        return self.finished

    @property
    def metric(self) -> float | None:
        """The evaluator's metric once evaluated, else the run's own (None until finished)."""
        if self.evaluated is not None:
            return self.evaluated.metric
        return None if self.finished is None else self.finished.metric

    @property
    def cause(self) -> str:
        """The run's cause, or eval:<why> when its evaluation failed."""
        if self.evaluated is not None and self.evaluated.cause is not None:
            return self.evaluated.cause
        return self.outcome.cause

    @property
    def claimed(self) -> float | None:
        return None if self.finished is None else self.finished.claimed

    # evaluated, checked (None: not evaluated / not checked)
    @property
    def eval_cause(self) -> str | None:
        return None if self.evaluated is None else self.evaluated.eval_cause

    @property
    def claim_flag(self) -> bool:
        return self.evaluated is not None and self.evaluated.claim_flag

    @property
    def claim_gap(self) -> float | None:
        return None if self.evaluated is None else self.evaluated.claim_gap

    @property
    def checks_ok(self) -> bool | None:
        return None if self.checked is None else self.checked.checks_ok

    @property
    def exit_code(self) -> int | None:
        return self.outcome.exit_code

    @property
    def memory_gb(self) -> float:
        return self.outcome.memory_gb

    @property
    def wall_s(self) -> float:
        return self.outcome.wall_s

    @property
    def queued_s(self) -> float | None:
        """Seconds its job waited in a cluster's queue (runner = slurm); None for local runs."""
        return self.outcome.queued_s

    @property
    def gpu_count(self) -> int:
        return self.outcome.gpu_count

    @property
    def detail(self) -> str | None:
        return self.outcome.detail

    @property
    def training_seconds(self) -> float | None:
        return self.outcome.training_seconds

    @property
    def kill_latency_s(self) -> float | None:
        return self.outcome.kill_latency_s

    # recorded
    @property
    def verdict(self) -> Recorded:
        """The judge's journaled verdict and its row (the ``recorded`` record); ``JournalError`` before that."""
        if self.recorded is None:
            raise self._missing("recorded")
        return self.recorded

    @property
    def status(self) -> Literal["keep", "discard", "crash"]:
        return self.verdict.status

    @property
    def row_description(self) -> str:
        return self.verdict.row_description

    @property
    def best_metric(self) -> float | None:
        return self.verdict.best_metric

    @property
    def best_commit(self) -> str | None:
        return self.verdict.best_commit

    # the judge's decision inputs (None before recorded, or in journals before the noise-aware judge)
    @property
    def decision(self) -> str | None:
        return None if self.recorded is None else self.recorded.decision

    @property
    def reason(self) -> str | None:
        return None if self.recorded is None else self.recorded.reason

    @property
    def confidence(self) -> float | None:
        return None if self.recorded is None else self.recorded.confidence

    @property
    def sigma(self) -> float | None:
        return None if self.recorded is None else self.recorded.sigma

    @property
    def z(self) -> float | None:
        return None if self.recorded is None else self.recorded.z

    @property
    def gain(self) -> float | None:
        return None if self.recorded is None else self.recorded.gain

    @property
    def threshold(self) -> float | None:
        return None if self.recorded is None else self.recorded.threshold

    @property
    def mean(self) -> float | None:
        return None if self.recorded is None else self.recorded.mean


@dataclass
class JournalState:
    """Everything the journal says, folded."""

    experiments: dict[int, Experiment] = field(default_factory=dict)
    agent_state: dict[str, Any] = field(default_factory=dict)
    session: SessionRecord | None = None
    stops: list[StopRecord] = field(default_factory=list)
    skipped: list[UsageRecord] = field(default_factory=list)
    """``usage`` records: iterations whose proposal failed (their cost still counts)."""
    failed_in_a_row: list[UsageRecord] = field(default_factory=list)
    """The failed proposals since the last successful one."""
    waiting: WaitRecord | None = None
    """What the loop waits for now (engine, GPU), if anything."""
    waits: list[WaitRecord] = field(default_factory=list)
    """Every ``wait`` record in order, the ends (``what`` null) included: waits by reason, and for how long."""
    voided: list[UsageFields] = field(default_factory=list)
    """The cost of proposals a crash voided (their number was proposed again): paid for all the same."""
    drafts: dict[int, DraftRecord] = field(default_factory=dict)
    """Drafted proposals no lane has taken yet, by id (oldest first)."""
    dropped_drafts: list[DraftRecord] = field(default_factory=list)
    """Drafts that never ran (their cost still counts)."""
    confirm_drops: dict[int, str] = field(default_factory=dict)
    """Candidates the judge stopped confirming (``confirm_drop``), with the reason."""
    draft_ids: int = 0
    """Drafts ever journaled (the next draft's id)."""
    completion: list[int] = field(default_factory=list)
    """Experiment numbers in the order they were recorded (with lanes, not the order of n)."""
    setups: list[SetupRecord] = field(default_factory=list)
    """Runs of the repo's ``setup`` command after init (its inputs changed)."""
    measured: dict[str, Any] | None = None
    """The settings that decide what is measured, as pinned by the session's first ``config`` record."""

    def copy(self) -> JournalState:
        """A snapshot for a reader on another thread: containers copied, records shared (immutable)."""
        new = copy.copy(self)
        new.experiments = {n: copy.copy(e) for n, e in self.experiments.items()}
        for name in ("stops", "skipped", "failed_in_a_row", "voided", "dropped_drafts", "completion", "setups"):
            setattr(new, name, list(getattr(self, name)))
        new.drafts = dict(self.drafts)
        new.confirm_drops = dict(self.confirm_drops)
        new.agent_state = dict(self.agent_state)
        new.waits = list(self.waits)
        return new

    def all_usage(self) -> list[UsageFields]:
        """Every proposal's cost: those in experiments, those that failed, those a crash voided."""
        return ([e.usage for e in self.ordered()] + [r.usage for r in self.skipped] + self.voided
                + [d.usage for d in [*self.drafts.values(), *self.dropped_drafts]])

    @property
    def tag(self) -> str | None:
        return None if self.session is None else self.session.tag

    def ordered(self) -> list[Experiment]:
        return [self.experiments[n] for n in sorted(self.experiments)]

    def completed(self) -> list[Experiment]:
        """Recorded experiments in completion order (results.tsv's row order)."""
        return [self.experiments[n] for n in self.completion if self.experiments[n].done]

    def open(self) -> list[Experiment]:
        """Experiments not recorded yet: in flight in a lane, or left half-done by a crash."""
        return [e for e in self.ordered() if not e.done]

    def pending(self) -> Experiment | None:
        """The newest open experiment, if any (with one lane, the one a crash interrupted)."""
        open_ = self.open()
        return open_[-1] if open_ else None

    def next_n(self) -> int:
        return max(self.experiments, default=-1) + 1

    def best(self) -> Experiment | None:
        """The last keep recorded: keeps are strictly improving, so it is the best."""
        keeps = [e for e in self.completed() if e.status == "keep"]
        return keeps[-1] if keeps else None


def fold(state: JournalState, rec: Record) -> None:
    if isinstance(rec, PhaseRecord):
        _fold_phase(state, rec)
    elif isinstance(rec, AgentRecord):
        state.agent_state.update(rec.state)
    elif isinstance(rec, SessionRecord):
        state.session = rec
    elif isinstance(rec, StopRecord):
        state.stops.append(rec)
        state.waiting = None
    elif isinstance(rec, UsageRecord):
        state.skipped.append(rec)
        state.failed_in_a_row.append(rec)
    elif isinstance(rec, WaitRecord):
        state.waiting = None if rec.what is None else rec
        state.waits.append(rec)
    elif isinstance(rec, DraftRecord):
        state.drafts[rec.id] = rec
        state.draft_ids = max(state.draft_ids, rec.id + 1)
        state.failed_in_a_row = []
    elif isinstance(rec, SetupRecord):
        state.setups.append(rec)
    elif isinstance(rec, ConfigRecord):
        state.measured = rec.measured if state.measured is None else state.measured
    elif isinstance(rec, ConfirmDropRecord):
        state.confirm_drops[rec.candidate] = rec.reason
    elif isinstance(rec, DraftDropRecord):
        dropped = state.drafts.pop(rec.id, None)
        if dropped is not None:
            state.dropped_drafts.append(dropped)


def _fold_phase(state: JournalState, rec: PhaseRecord) -> None:
    if isinstance(rec, Proposed):
        # A fresh proposal for n replaces any earlier unrecorded attempt at the same number.
        if rec.n in state.experiments:
            state.voided.append(state.experiments[rec.n].usage)
        state.experiments[rec.n] = Experiment(proposed=rec)
        if rec.draft is not None:
            state.drafts.pop(rec.draft, None)  # its cost now counts in the experiment
        else:
            state.failed_in_a_row = []
    exp = state.experiments.get(rec.n)
    if exp is None:
        raise JournalError(f"journal: a {type(rec).__name__.lower()} record for experiment {rec.n} "
                           "comes before its proposal")
    if isinstance(rec, Committed):
        exp.committed = rec
    elif isinstance(rec, Running):
        exp.running = rec
    elif isinstance(rec, Finished):
        exp.finished = rec
        exp.evaluated = exp.checked = None  # a re-run after recovery is evaluated and checked afresh
    elif isinstance(rec, Evaluated):
        exp.evaluated = rec
    elif isinstance(rec, Checked):
        exp.checked = rec
    elif isinstance(rec, Recorded):
        exp.recorded = rec
        if rec.n not in state.completion:
            state.completion.append(rec.n)
    phase: Phase = rec.phase  # type: ignore[attr-defined]
    exp.phase = phase
    exp.times[phase] = rec.at
    exp.extra.update(rec.model_extra or {})

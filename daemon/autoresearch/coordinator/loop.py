"""The experiment loop: propose → commit → run → judge → record, in N lanes at once, until a limit or a
signal.

``Loop.run`` checks the repo, tells systemd READY, waits until the runners work (reaping orphans; an
engine that is down or a busy GPU is waited out, see ``waits``), settles whatever a crash left
half-done in any lane (see ``phases``), then schedules: each free lane takes the head of the queue
(``scheduler``) and drives one experiment in its own thread (``lanepool``), while the drafter asks the
agent for the next proposals (``drafts``). Journal appends are serialized; judging and the branch
moves are serialized by one lock, so a keep is always decided against the current best.

It never stops by itself unless a configured limit is reached (exit 0, so a supervisor does not restart
it; runs in flight finish first), it is signalled, or something a person must fix happens (exit 2, with
a ``stop`` record saying why).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from autoresearch.agents.base import Agent
from autoresearch.coordinator import limits
from autoresearch.coordinator.coordinator import Coordinator
from autoresearch.coordinator.drafts import Drafter
from autoresearch.coordinator.lanepool import LanePool, LaneSlot
from autoresearch.coordinator.phases import Phases
from autoresearch.coordinator.scheduler import (
    DraftNeed,
    Job,
    drafts_to_start,
    next_job,
)
from autoresearch.coordinator.waits import TRANSIENT, Waiter, what_of
from autoresearch.errors import AgentError, AutoresearchError, JournalError, RepoError
from autoresearch.git.workspace import Workspace
from autoresearch.journal.ledger import remove_stale_temps, write_results
from autoresearch.journal.records import StopRecord, UsageFields, UsageRecord
from autoresearch.journal.store import Experiment, Journal, JournalState
from autoresearch.judging import noise
from autoresearch.judging.research import Measure
from autoresearch.ops.config import Settings
from autoresearch.ops.guards import Heartbeats, daemon_lock, draft_horizon_s, lane_horizon_s, watchdog
from autoresearch.ops.sdnotify import Notifier
from autoresearch.runners.base import Runner
from autoresearch.runners.home import sweep_layers
from autoresearch.runners.lanes import Lane
from autoresearch.sessions import settings as session_config
from autoresearch.sessions.session import Session

log = structlog.get_logger("autoresearch.loop")

SYNC_EVERY_S = 2.0
"""Least seconds between two looks at the session branch while lanes are free."""

PROPOSAL_HORIZON_S = 3600.0
"""How long a proposal may take before the systemd watchdog may consider the loop hung."""


@dataclass(frozen=True)
class StopReason:
    reason: str
    exit_code: int = 0


@dataclass
class Loop:
    settings: Settings
    session: Session
    workspace: Workspace
    runner: Runner
    agent: Agent
    notifier: Notifier = field(default_factory=Notifier)
    stop_event: threading.Event = field(default_factory=threading.Event)
    on_recorded: Callable[[Experiment], None] | None = None
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now().astimezone())
    idle_wait_s: Callable[[int], float] | None = None
    """Pause after k failed proposals in a row; None = doubling up to ``proposals.max_backoff_s``."""
    wait_max_s: float = 60.0
    """Longest pause between two probes of an engine or GPU that is not back yet."""
    lanes: list[tuple[Lane, Runner]] = field(default_factory=list)
    """Each lane with its own (pinned) runner; empty = one lane with ``runner``."""
    hearts: Heartbeats = field(default_factory=Heartbeats)
    """The lanes' and drafters' own liveness, read by the watchdog (``guards``)."""
    _alive_until: float = 0.0
    _pool: LanePool | None = None
    _synced_at: float = 0.0
    _synced_rows: int = 0

    @property
    def journal(self) -> Journal:
        return self.session.journal

    @property
    def pool(self) -> LanePool:
        if self._pool is None:
            pairs = self.lanes or [(Lane(0), self.runner)]
            horizons = (lane_horizon_s(self.settings, len(pairs)), draft_horizon_s(self.settings))
            self._pool = LanePool([LaneSlot(lane, runner) for lane, runner in pairs], hearts=self.hearts,
                                  horizons_s=horizons)
        return self._pool

    @property
    def coordinator(self) -> Coordinator:
        """The one writer: numbers, refs, the judging lock (stateless: its lock is the journal's)."""
        return Coordinator(self.settings, self.session, self.workspace, self.journal)

    @property
    def drafter(self) -> Drafter:
        return Drafter(self.settings, self.session, self.workspace, self.journal, self.agent, self._proposal_failed,
                       self.coordinator.add_draft)

    def run(self) -> StopReason:
        with (
            daemon_lock(self.session.state_dir),
            watchdog(self.notifier, self._within_horizon, self.hearts),
            contextlib.closing(self.workspace),
        ):
            try:
                return self._run()
            except JournalError:
                raise  # the journal is not ours any more (replaced) or unreadable: write nothing to it
            except AutoresearchError as exc:
                if exc.exit_code == 2:  # a person must fix it: say why in the journal and to systemd
                    self._stop(str(exc).splitlines()[0], exit_code=2)
                raise

    def _run(self) -> StopReason:
        self._beat(PROPOSAL_HORIZON_S)
        self._start()
        # READY before the runner is waited for: an engine outage must not fail the unit's start.
        self.notifier.ready(self.status_text())
        self.wait_for_runner(reap=True)
        log.info("loop.ready", repo=str(self.session.repo), branch=self.session.branch, runner=self.runner.name,
                 agent=self.agent.name, lanes=len(self.pool.slots))
        self._settle()
        return self._schedule()

    def _start(self) -> None:
        """Back to a known state: the branch and results.tsv. Orphans are reaped and the runner checked by
        ``wait_for_runner``; experiments a crash interrupted are settled by ``_settle``."""
        branch = self.session.branch
        if self.workspace.branch_sha(branch) is None:
            raise RepoError(f"branch {branch} does not exist; run `autoresearch init` first")
        self.journal.repair_tail()
        remove_stale_temps(self.session.repo)
        state = self.journal.load()
        if state.waiting is not None:
            self._waiter.end()  # a killed daemon's wait: this daemon probes afresh
        self._pin_measured(state)
        # The user's checkout is theirs: never switched, reset or cleaned; only a clean checkout of the
        # session branch is fast-forwarded (branchsync). A commit someone put on the branch is adopted.
        self._reconcile()
        for exp in state.open():
            log.warning("recovery.resume", n=exp.n, phase=exp.phase, lane=exp.lane)
        write_results(self.session.repo, self.journal.load(), self.settings.metric)

    def _pin_measured(self, state: JournalState) -> None:
        """The first run pins the keys that decide what is measured; a later run with other values exits 2."""
        if state.measured is None:
            self.coordinator.pin_measured()
        else:
            session_config.check_unchanged(state.measured, self.settings, state.tag)

    def _sync_due(self, state: JournalState) -> bool:
        """After each row, and every ``SYNC_EVERY_S`` while a lane is idle (git is not asked every tick)."""
        return len(state.completion) != self._synced_rows or time.monotonic() >= self._synced_at + SYNC_EVERY_S

    def _reconcile(self, wait: bool = True) -> None:
        """The session branch to the journal's best, a foreign commit adopted (``Coordinator.reconcile``).
        ``wait=False``: skip it while another writer holds the lock (the scheduler goes on)."""
        state = self.coordinator.reconcile(wait)
        if state is not None:
            self._synced_at, self._synced_rows = time.monotonic(), len(state.completion)

    def _settle(self) -> None:
        """Runs a killed daemon left in flight (one per lane): each is reaped by its lane's runner and
        recorded once; a finished run is judged. Proposed or committed ones wait for a lane."""
        for exp in self.journal.load().open():
            if exp.phase not in ("proposed", "committed") and not self.stop_event.is_set():
                self._drive(self._slot_of(exp.lane), exp.n)

    def _slot_of(self, lane: int | None) -> LaneSlot:
        return next((s for s in self.pool.slots if s.lane.index == lane), self.pool.slots[0])

    def _schedule(self) -> StopReason:
        """Start work on free lanes, draft ahead, until a limit (once the lanes are done) or a signal."""
        while True:
            self._beat(max(PROPOSAL_HORIZON_S, self.settings.budget + self.settings.grace_s + 300))
            if self.pool.errors:
                self.stop_event.set()  # the other lanes stop their runs (recorded as interrupted)
                self.pool.join()
                raise self.pool.errors[0]
            if self.stop_event.is_set():
                self.pool.join()
                return self._stop("signal")
            state = self.journal.load()
            reason = self.limit_reached(state)
            runs_ok = self.limit_reached(state, spend=False) is None and not limits.runs_reached(
                self.settings.limits, state)
            paid_only = runs_ok and not self._count_reached(state)
            if paid_only and self.pool.free() and self._sync_due(state):
                self._reconcile(wait=False)  # between experiments: a commit made meanwhile becomes the base
            self._dispatch(take=paid_only, draft=paid_only and reason is None, remeasure_ok=runs_ok)
            state = self.journal.load()
            if reason is None and not paid_only and self._drained(state):
                reason = f"max_experiments reached ({self.settings.limits.max_experiments} changes started)"
            # A run the judge still wants (one may have been queued since _dispatch read the state) finishes
            # a change already counted: the loop stops only when none is left.
            if reason is not None and self.pool.idle() and not state.open() and not (paid_only and state.drafts) \
                    and not (runs_ok and self._pending(state)):
                self._end_waits()
                return self._stop(reason)
            self.pool.wait(timeout=0.5)

    def _end_waits(self) -> None:
        """Lanes still waiting for their runner (no experiment in them) end their wait; the loop stops."""
        if any(not s.free for s in self.pool.slots):
            self.stop_event.set()
            self.pool.join()
            self.stop_event.clear()  # we stop for the limit, not for a signal: a later run() starts afresh

    def _count_reached(self, state: JournalState) -> bool:
        return limits.count_reached(self.settings.limits, state)

    def _drained(self, state: JournalState) -> bool:
        """Nothing left to run: no lane busy, nothing open, no re-measurement due (the count limit's end
        when a change it counted never reached a verdict of its own)."""
        return self.pool.idle() and not state.open() and not self._pending(state)

    def _dispatch(self, take: bool, draft: bool, remeasure_ok: bool = True) -> None:
        """``take``: new changes may start (open ones always may); ``remeasure_ok``: the judge's runs may
        start (they finish a change already counted); ``draft``: the agent may be asked."""
        for slot in self.pool.free():
            with self.coordinator.lock:  # the choice and its record see one state: no other write in between
                state = self.journal.load()
                wanted = self._pending(state) if remeasure_ok else ()
                changes = take and not noise.calibrating(state, self.settings.noise.repeats)
                job = next_job(state, self.pool.busy_ns(), take or bool(wanted), wanted, changes=changes,
                               lane=slot.lane.index)
                if job is not None:
                    self._start_job(slot, job, state)
        if draft:
            self._start_drafts(self.journal.load())

    def _start_job(self, slot: LaneSlot, job: Job, state: JournalState) -> None:
        """Start ``job`` in ``slot``. A new experiment is numbered by the coordinator as it is journaled, under
        the lock ``state`` was loaded under (no other write in between)."""
        n = self.coordinator.journal_job(job, state, slot.lane.index)
        if n is None:
            return  # the draft was dropped
        description = self.journal.load().experiments[n].description
        self.notifier.status(f"running #{n}: {description}; {self.status_text()}")
        self.pool.start(slot, n, functools.partial(self._drive, slot, n))

    def _pending(self, state: JournalState) -> tuple[Measure, ...]:
        """The judge's pending measurements (baseline repeats, confirmations), in order."""
        return noise.pending(state, self.settings.noise.repeats)

    def _start_drafts(self, state: JournalState) -> None:
        p = self.settings.proposals
        room = limits.room(self.settings.limits, state)
        need = DraftNeed(lanes=len(self.pool.slots), idle_lanes=len(self.pool.free()), ahead=p.ahead,
                         drafting=len(self.pool.drafting), concurrency=p.concurrency, room=room)
        for _ in range(drafts_to_start(state, need)):
            if self._cost_ahead(state):
                return
            # Only a label for the agent's logs and scratch folder (distinct per draft in progress); the
            # experiment's number is given by the coordinator when a lane takes the draft.
            label = state.next_n() + len(state.drafts) + len(self.pool.drafting)
            self.pool.start_draft(functools.partial(self.drafter.draft, label))

    def _cost_ahead(self, state: JournalState) -> bool:
        return limits.cost_ahead(self.settings.limits, state, len(self.pool.drafting))

    def _drive(self, slot: LaneSlot, n: int) -> None:
        """Drive experiment n to recorded in ``slot``'s lane. If the lane's runner cannot start it (engine
        down, GPU busy or missing), the lane waits and the experiment stays open for any lane."""
        phases = self._phases(slot)
        try:
            exp = phases.advance(n, self.stop_event)
        except TRANSIENT as exc:
            log.error("run.runner_unavailable", n=n, lane=slot.lane.index, what=what_of(exc), error=str(exc))
            slot.n = None  # another lane may take it meanwhile
            self.wait_for_runner(runner=slot.runner)
            return
        self.notifier.status(self.status_text())
        if exp.cause == "docker" and not self.stop_event.is_set():
            self.wait_for_runner(runner=slot.runner)
        if self.on_recorded is not None:
            self.on_recorded(exp)

    def _phases(self, slot: LaneSlot) -> Phases:
        return Phases(self.settings, self.session, self.workspace, self.journal.for_lane(slot.lane.index),
                      slot.runner, heartbeat=self.hearts.beater())

    def _proposal_failed(self, n: int, exc: AgentError) -> None:
        """Journal the failure (its cost counts toward max_cost_usd), show it, pause (see waits)."""
        self.journal.append(UsageRecord(type="usage", n=n, error=str(exc),
                                        usage=UsageFields.model_validate(exc.usage or {})))
        self._waiter.after_failed_proposal(n, self.agent.name, exc, self.settings.proposals, self.idle_wait_s)

    def limit_reached(self, state: JournalState, spend: bool = True) -> str | None:
        return limits.reached(self.settings.limits, state, self.now(), spend)

    def _stop(self, reason: str, exit_code: int = 0) -> StopReason:
        self.journal.append(StopRecord(type="stop", reason=reason, exit_code=exit_code))
        (log.error if exit_code else log.info)("loop.stopped", reason=reason, exit_code=exit_code)
        self.notifier.stopping(f"stopped: {reason}; {self.status_text()}")
        return StopReason(reason=reason, exit_code=exit_code)

    @property
    def _waiter(self) -> Waiter:
        return self._waiter_for(None)

    def _waiter_for(self, lane: int | None) -> Waiter:
        return Waiter(self.journal, self.notifier, self.stop_event, self._beat, self.status_text,
                      max_wait_s=self.wait_max_s, lane=lane)

    def wait_for_runner(self, reap: bool = False, runner: Runner | None = None) -> None:
        """Until the runner works (engine up, image there, GPUs free), or we are told to stop. With
        ``reap``, first reap what a crashed daemon left (which needs the engine too). ``runner``: one
        lane's runner (that lane waits, the others go on); default: every lane's."""
        pending_reap = reap
        runners = [runner] if runner is not None else [s.runner for s in self.pool.slots]

        def probe() -> None:
            nonlocal pending_reap
            if pending_reap:
                reaped = sum(r.reap_orphans() for r in runners)
                pending_reap = False
                if reaped:
                    log.warning("recovery.orphans_reaped", count=reaped)
                if sweep_layers(self.session.state_dir):  # nothing runs now: a killed run's home layer
                    log.info("recovery.home_layers_removed")
            for r in runners:
                r.check()

        lane = next((s.lane.index for s in self.pool.slots if s.runner is runner), None)
        self._waiter_for(lane if len(self.pool.slots) > 1 else None).until(probe)

    def status_text(self) -> str:
        state = self.journal.load()
        done = state.completed()
        best = state.best()
        best_text = "none"
        mean = noise.best_mean(state)
        if best is not None and mean is not None:
            best_text = f"{mean:.6f} ({best.commit[:7]})"
        return f"{len(done)} experiments; best {self.settings.metric} {best_text}; noise σ {noise.sigma(state):.6f}"

    def _beat(self, horizon_s: float) -> None:
        """The current phase should be over within ``horizon_s``; past that the watchdog goes quiet."""
        self._alive_until = time.monotonic() + horizon_s
        self.hearts.beat(horizon_s)  # in a lane or drafter thread (a wait for its runner): its own heart too

    def _within_horizon(self) -> bool:
        return time.monotonic() < self._alive_until

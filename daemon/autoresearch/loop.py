"""The experiment loop: propose → commit → run → judge → record, until a limit or a signal.

``Loop.run`` checks the repo, tells systemd READY, waits until the runner works (reaping orphans; an
engine that is down or a busy GPU is waited out, see ``waits``), settles whatever a crash left
half-done (see ``phases``), then iterates. It never stops by itself unless a configured limit is
reached (exit 0, so a supervisor does not restart it), it is signalled, or something a person must fix
happens (exit 2, with a ``stop`` record saying why).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from autoresearch import noise
from autoresearch.agents.base import Agent, HistoryEntry, Proposal, ProposalContext, check_python
from autoresearch.config import Settings
from autoresearch.errors import AgentError, AgentFatal, AutoresearchError, JournalError, RepoError
from autoresearch.guards import daemon_lock, watchdog
from autoresearch.journal import Experiment, Journal, JournalState
from autoresearch.ledger import remove_stale_temps, write_results
from autoresearch.phases import Phases
from autoresearch.runners.base import Runner, log_tail
from autoresearch.sdnotify import Notifier
from autoresearch.session import Session
from autoresearch.status import gpu_hours, total_cost
from autoresearch.waits import TRANSIENT, Waiter, what_of
from autoresearch.workspace import Workspace

log = structlog.get_logger("autoresearch.loop")

PROPOSAL_HORIZON_S = 3600.0
"""How long a proposal may take before the systemd watchdog may consider the loop hung."""
RECENT_ERRORS = 5
"""Failed proposals' errors shown to the agent once it escalates."""


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
    _alive_until: float = 0.0

    @property
    def journal(self) -> Journal:
        return self.session.journal

    @property
    def phases(self) -> Phases:
        return Phases(self.settings, self.session, self.workspace, self.journal, self.runner)

    def run(self) -> StopReason:
        with (
            daemon_lock(self.session.state_dir),
            watchdog(self.notifier, self._within_horizon),
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
                 agent=self.agent.name)
        while not self.stop_event.is_set():
            state = self.journal.load()
            pending = state.pending()
            if pending is not None:
                self._advance(pending.n)  # an experiment a crash or a runner outage left open
                continue
            reason = self.limit_reached(state)
            if reason:
                return self._stop(reason)
            self.step()
        return self._stop("signal")

    def _start(self) -> None:
        """Back to a known state: the branch and results.tsv. Orphans are reaped and the runner checked by
        ``wait_for_runner``; an experiment a crash interrupted is settled by ``run``'s first pass."""
        ws, branch = self.workspace, self.session.branch
        if ws.branch_sha(branch) is None:
            raise RepoError(f"branch {branch} does not exist; run `autoresearch init` first")
        self.journal.repair_tail()
        remove_stale_temps(self.session.repo)
        state = self.journal.load()
        pending = state.pending()
        if state.waiting is not None:
            self._waiter.end()  # a killed daemon's wait: this daemon probes afresh
        dirty = ws.dirty_files()
        if ws.current_branch() != branch:
            if dirty:
                raise RepoError(f"{ws.root} has uncommitted changes; commit or stash them before switching to {branch}")
            ws.checkout(branch)
        if dirty and pending is None:
            raise RepoError(f"{ws.root} has uncommitted changes ({', '.join(dirty[:5])}); commit or stash them")
        if pending is not None:
            log.warning("recovery.resume", n=pending.n, phase=pending.phase)
        write_results(self.session.repo, self.journal.load(), self.settings.metric)

    def _advance(self, n: int) -> None:
        """Drive experiment n to recorded. If the runner cannot start it (engine down, GPU busy), wait and
        leave it open: the next pass runs the same experiment, and no row is written for the outage."""
        self._beat(self.settings.budget + self.settings.grace_s + 300)
        try:
            exp = self.phases.advance(n, self.stop_event)
        except TRANSIENT as exc:
            log.error("run.runner_unavailable", n=n, what=what_of(exc), error=str(exc))
            self.wait_for_runner()
            return
        self.notifier.status(self.status_text())
        if exp.cause == "docker" and not self.stop_event.is_set():
            self.wait_for_runner()
        if self.on_recorded is not None:
            self.on_recorded(exp)

    def step(self) -> None:
        """One iteration. Agent failures skip it (with a growing pause); nothing else is swallowed."""
        state = self.journal.load()
        n = state.next_n()
        best = state.best()
        self._beat(PROPOSAL_HORIZON_S)
        t0 = time.monotonic()
        remeasure = noise.next_remeasure(state, self.settings.noise.repeats) if best is not None else None
        if remeasure is not None:
            self._journal_remeasure(n, remeasure, best.commit if best else remeasure.commit, state)
            self._advance(n)
            return
        if best is None:
            head = self.workspace.branch_sha(self.session.branch) or self.workspace.head()
            content = self.workspace.read(head, self.settings.target)
            proposal, parent, baseline = Proposal(content=content, description="baseline"), head, True
        else:
            proposal_or_none = self._propose(state, n, best)
            if proposal_or_none is None or self.stop_event.is_set():
                return
            proposal, parent, baseline = proposal_or_none, best.commit, False
        self._journal_proposal(n, proposal, parent, baseline, time.monotonic() - t0)
        self.notifier.status(f"running #{n}: {proposal.description}; {self.status_text()}")
        self._advance(n)

    def _journal_remeasure(self, n: int, todo: noise.Remeasure, parent: str, state: JournalState) -> None:
        """A repeat of the baseline or a confirmation: the same commit, run again on another seed."""
        content = self.workspace.read(todo.commit, self.settings.target)
        self._journal_proposal(n, Proposal(content=content, description=todo.description), parent, False, 0.0,
                               agent="judge", measure_commit=todo.commit, confirm_of=todo.of,
                               **({} if todo.for_candidate is None else {"for_candidate": todo.for_candidate}))
        self.notifier.status(f"running #{n}: {todo.description}; {self.status_text()}")

    def _propose(self, state: JournalState, n: int, best: Experiment) -> Proposal | None:
        ctx = self.context(state, n, best)
        try:
            proposal = self.agent.propose(ctx)
            if proposal.content == ctx.best_content:
                raise AgentError("the proposal does not change the target")
            check_python(proposal.content, self.settings.target)
        except AgentFatal:
            raise
        except AgentError as exc:
            self._proposal_failed(n, exc)
            return None
        return proposal

    def _proposal_failed(self, n: int, exc: AgentError) -> None:
        """Journal the failure (its cost counts toward max_cost_usd), show it, pause (see waits)."""
        self.journal.append({"type": "usage", "n": n, "error": str(exc), "usage": exc.usage or {}})
        self._waiter.after_failed_proposal(n, self.agent.name, exc, self.settings.proposals, self.idle_wait_s)

    def context(self, state: JournalState, n: int, best: Experiment) -> ProposalContext:
        done = state.recorded()
        crash_streak = _trailing(done, lambda e: e.status == "crash")
        last = done[-1] if done else None
        crash_log = None
        if last is not None and last.status == "crash" and crash_streak <= self.settings.max_crash_fixes:
            crash_log = log_tail(self.session.run_dir(last.n) / "run.log", self.settings.anthropic.max_log_chars)
        best_commit = best.commit
        failed = state.failed_in_a_row
        escalated = len(failed) >= self.settings.proposals.max_failed_in_a_row
        return ProposalContext(
            n=n,
            repo=self.session.repo,
            target=self.settings.target,
            readonly=tuple(self.settings.readonly),
            metric=self.settings.metric,
            direction=self.settings.direction,
            best_commit=best_commit,
            best_content=self.workspace.read(best_commit, self.settings.target),
            best_metric=noise.best_mean(state),
            history=tuple(_history_entry(e) for e in done),
            last_crash_log=crash_log,
            crash_streak=crash_streak,
            stale_streak=_trailing(done, lambda e: e.status != "keep"),
            agent_state=dict(state.agent_state),
            runs_dir=self.session.run_dir(0).parent,
            recent_errors=tuple(r.error for r in failed[-RECENT_ERRORS:]) if escalated else (),
        )

    def _journal_proposal(self, n: int, proposal: Proposal, parent: str, baseline: bool, propose_s: float,
                          **extra: Any) -> None:
        if proposal.agent_state is not None:
            self.journal.append({"type": "agent", "n": n, "state": proposal.agent_state})
        self.journal.phase(
            n,
            "proposed",
            parent=parent,
            baseline=baseline,
            description=proposal.description,
            content=proposal.content,
            content_sha256=hashlib.sha256(proposal.content.encode()).hexdigest(),
            agent="baseline" if baseline else extra.pop("agent", self.agent.name),
            meta=proposal.meta,
            usage=proposal.usage.as_dict(),
            propose_s=round(propose_s, 3),
            # The commit date is fixed here, so re-committing after a crash gives the same sha.
            when=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            # Every run its own seed (its number): a candidate is one draw from the same spread as the
            # baseline's repeats, not the baseline's lucky (or unlucky) seed 0 again.
            seed=n,
            **extra,
        )

    def limit_reached(self, state: JournalState) -> str | None:
        limits = self.settings.limits
        if limits.max_experiments is not None and len(state.recorded()) >= limits.max_experiments:
            return f"max_experiments reached ({limits.max_experiments})"
        if limits.max_gpu_hours is not None and (hours := gpu_hours(state)) >= limits.max_gpu_hours:
            return f"max_gpu_hours reached ({hours:.3f} >= {limits.max_gpu_hours})"
        if limits.max_cost_usd is not None and (cost := total_cost(state)) >= limits.max_cost_usd:
            return f"max_cost_usd reached (${cost:.2f} >= ${limits.max_cost_usd:.2f})"
        if limits.stop_at is not None:
            stop_at = limits.stop_at if limits.stop_at.tzinfo else limits.stop_at.astimezone()
            if self.now() >= stop_at:
                return f"stop_at reached ({stop_at.isoformat()})"
        return None

    def _stop(self, reason: str, exit_code: int = 0) -> StopReason:
        self.journal.append({"type": "stop", "reason": reason, "exit_code": exit_code})
        (log.error if exit_code else log.info)("loop.stopped", reason=reason, exit_code=exit_code)
        self.notifier.stopping(f"stopped: {reason}; {self.status_text()}")
        return StopReason(reason=reason, exit_code=exit_code)

    @property
    def _waiter(self) -> Waiter:
        return Waiter(self.journal, self.notifier, self.stop_event, self._beat, self.status_text,
                      max_wait_s=self.wait_max_s)

    def wait_for_runner(self, reap: bool = False) -> None:
        """Until the runner works (engine up, image there, GPUs free), or we are told to stop. With
        ``reap``, first reap what a crashed daemon left (which needs the engine too)."""
        pending_reap = reap

        def probe() -> None:
            nonlocal pending_reap
            if pending_reap:
                reaped = self.runner.reap_orphans()
                pending_reap = False
                if reaped:
                    log.warning("recovery.orphans_reaped", count=reaped)
            self.runner.check()

        self._waiter.until(probe)

    def status_text(self) -> str:
        state = self.journal.load()
        done = state.recorded()
        best = state.best()
        best_text = "none"
        mean = noise.best_mean(state)
        if best is not None and mean is not None:
            best_text = f"{mean:.6f} ({best.commit[:7]})"
        return f"{len(done)} experiments; best {self.settings.metric} {best_text}; noise σ {noise.sigma(state):.6f}"

    def _beat(self, horizon_s: float) -> None:
        """The current phase should be over within ``horizon_s``; past that the watchdog goes quiet."""
        self._alive_until = time.monotonic() + horizon_s

    def _within_horizon(self) -> bool:
        return time.monotonic() < self._alive_until


def _trailing(done: list[Experiment], pred: Callable[[Experiment], bool]) -> int:
    count = 0
    for exp in reversed(done):
        if not pred(exp):
            break
        count += 1
    return count


def _history_entry(exp: Experiment) -> HistoryEntry:
    meta = dict(exp.meta)
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


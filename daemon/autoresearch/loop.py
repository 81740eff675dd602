"""The experiment loop: propose → commit → run → judge → record, until a limit or a signal.

``Loop.run`` first settles whatever a crash left half-done (see ``phases``), reaps orphans, checks the
runner, tells systemd READY, then iterates. It never stops by itself unless a configured limit is
reached (exit 0, so a supervisor does not restart it) or it is signalled.
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
from autoresearch.errors import AgentError, AgentFatal, EngineUnavailable, GpuError, RepoError
from autoresearch.guards import daemon_lock, watchdog
from autoresearch.journal import Experiment, Journal, JournalState
from autoresearch.ledger import remove_stale_temps, write_results
from autoresearch.phases import Phases
from autoresearch.retry import retrying
from autoresearch.runners.base import Runner, log_tail
from autoresearch.sdnotify import Notifier
from autoresearch.session import Session
from autoresearch.status import gpu_hours, total_cost
from autoresearch.workspace import Workspace

log = structlog.get_logger("autoresearch.loop")

PROPOSAL_HORIZON_S = 3600.0
"""How long a proposal may take before the systemd watchdog may consider the loop hung."""
GPU_WAIT_S = 60.0
"""Pause before retrying a run whose GPU was missing or full."""


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
    idle_wait_s: Callable[[int], float] = field(default=lambda k: min(2.0**k, 60.0))
    _alive_until: float = 0.0
    _skips: int = 0

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
            self._beat(PROPOSAL_HORIZON_S)
            self._start()
            self.notifier.ready(self.status_text())
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
        """Back to a known state: the branch, orphans reaped, the runner checked. An experiment a crash
        interrupted is settled by ``run``'s first pass, after READY (settling may mean finishing a run)."""
        ws, branch = self.workspace, self.session.branch
        if ws.branch_sha(branch) is None:
            raise RepoError(f"branch {branch} does not exist; run `autoresearch init` first")
        self.journal.repair_tail()
        remove_stale_temps(self.session.repo)
        pending = self.journal.load().pending()
        dirty = ws.dirty_files()
        if ws.current_branch() != branch:
            if dirty:
                raise RepoError(f"{ws.root} has uncommitted changes; commit or stash them before switching to {branch}")
            ws.checkout(branch)
        if dirty and pending is None:
            raise RepoError(f"{ws.root} has uncommitted changes ({', '.join(dirty[:5])}); commit or stash them")
        if pending is not None:
            log.warning("recovery.resume", n=pending.n, phase=pending.phase)
        reaped = self.runner.reap_orphans()
        if reaped:
            log.warning("recovery.orphans_reaped", count=reaped)
        self.runner.check()
        write_results(self.session.repo, self.journal.load(), self.settings.metric)

    def _advance(self, n: int) -> None:
        """Drive experiment n to recorded. If the runner cannot start it (engine down, GPU busy), wait and
        leave it open: the next pass runs the same experiment, and no row is written for the outage."""
        self._beat(self.settings.budget + self.settings.grace_s + 300)
        try:
            exp = self.phases.advance(n, self.stop_event)
        except EngineUnavailable as exc:
            log.error("run.engine_unavailable", n=n, error=str(exc))
            self.wait_for_engine()
            return
        except GpuError as exc:
            log.error("run.gpu_unavailable", n=n, error=str(exc), wait_s=GPU_WAIT_S)
            self._beat(GPU_WAIT_S + 60)
            self.stop_event.wait(GPU_WAIT_S)
            return
        self.notifier.status(self.status_text())
        if exp.get("cause") == "docker" and not self.stop_event.is_set():
            self.wait_for_engine()
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
            self._journal_remeasure(n, remeasure, str(best.get("commit")) if best else remeasure.commit, state)
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
            proposal, parent, baseline = proposal_or_none, str(best.get("commit")), False
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
            self._skips += 1
            self.journal.append({"type": "usage", "n": n, "error": str(exc), "usage": exc.usage or {}})
            wait = self.idle_wait_s(self._skips)
            log.warning("proposal.skipped", n=n, agent=self.agent.name, error=str(exc), wait_s=wait)
            self.stop_event.wait(wait)
            return None
        self._skips = 0
        return proposal

    def context(self, state: JournalState, n: int, best: Experiment) -> ProposalContext:
        done = state.recorded()
        crash_streak = _trailing(done, lambda e: e.status == "crash")
        last = done[-1] if done else None
        crash_log = None
        if last is not None and last.status == "crash" and crash_streak <= self.settings.max_crash_fixes:
            crash_log = log_tail(self.session.run_dir(last.n) / "run.log")
        best_commit = str(best.get("commit"))
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

    def _stop(self, reason: str) -> StopReason:
        self.journal.append({"type": "stop", "reason": reason})
        log.info("loop.stopped", reason=reason)
        self.notifier.stopping(f"stopped: {reason}; {self.status_text()}")
        return StopReason(reason=reason, exit_code=0)

    def wait_for_engine(self) -> None:
        """After an engine failure, back off until the runner works again (or we are told to stop)."""

        def probe() -> None:
            if not self.stop_event.is_set():
                self._beat(120)
                self.runner.check()

        def pause(seconds: float) -> None:
            self.stop_event.wait(seconds)

        retrying(retry_on=(EngineUnavailable,), attempts=None, max_wait_s=60, what="docker engine", sleep=pause)(probe)

    def status_text(self) -> str:
        state = self.journal.load()
        done = state.recorded()
        best = state.best()
        best_text = "none"
        mean = noise.best_mean(state)
        if best is not None and mean is not None:
            best_text = f"{mean:.6f} ({str(best.get('commit'))[:7]})"
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
    meta = dict(exp.get("meta") or {})
    meta["content_sha256"] = exp.get("content_sha256")
    return HistoryEntry(
        n=exp.n,
        commit=str(exp.get("commit") or ""),
        status=str(exp.status),
        metric=exp.metric,
        description=str(exp.get("description") or ""),
        cause=str(exp.get("cause") or ""),
        meta=meta,
    )


"""Wait, don't die: the loop's one policy for conditions outside it that pass by themselves (the Docker
engine down or restarting, a GPU missing or busy, a Slurm controller that does not answer). It probes
with back-off until the probe passes or the loop is told to stop, and makes the wait visible: a ``wait``
record in the journal (``status`` shows it), the systemd ``STATUS=`` line, and a log event when it
starts and ends.

A failed proposal (an invalid edit, an API that stays overloaded past its retries) is not an outage
but is paced the same way: ``after_failed_proposal`` pauses with a growing back-off and says why.

What a person must fix (an image to build, a config error, a crashed baseline, a rejected API key) is
not waited out: those errors pass through and stop the daemon with exit code 2.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from autoresearch.errors import EngineUnavailable, GpuError, SlurmUnavailable
from autoresearch.journal.records import WaitWhat
from autoresearch.journal.store import Journal
from autoresearch.ops.config import ProposalSettings
from autoresearch.ops.retry import backoff_s, retrying
from autoresearch.ops.sdnotify import Notifier

log = structlog.get_logger("autoresearch.loop")

TRANSIENT: tuple[type[Exception], ...] = (EngineUnavailable, GpuError)
# Most specific first: a Slurm controller that is down is an EngineUnavailable, named for what it is.
_WHAT: dict[type[Exception], WaitWhat] = {SlurmUnavailable: "slurm", EngineUnavailable: "engine", GpuError: "gpu"}
_LABEL: dict[WaitWhat, str] = {"engine": "the Docker engine", "gpu": "a free GPU", "runner": "the runner",
                               "slurm": "the Slurm controller (slurmctld)"}


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def what_of(exc: BaseException) -> WaitWhat:
    return next((w for cls, w in _WHAT.items() if isinstance(exc, cls)), "runner")


@dataclass
class Waiter:
    journal: Journal
    notifier: Notifier
    stop_event: threading.Event
    beat: Callable[[float], None]
    """Tells the watchdog how long the current probe-and-pause may take."""
    status_text: Callable[[], str]
    initial_s: float = 1.0
    max_wait_s: float = 60.0
    lane: int | None = None
    """The lane that waits (its GPU held by a dead run, or missing); None: the whole loop waits."""

    def until(self, probe: Callable[[], None]) -> None:
        """Call ``probe`` until it raises no transient error, or until the stop event is set."""
        waiting: WaitWhat | None = None

        def attempt() -> None:
            nonlocal waiting
            if self.stop_event.is_set():
                return
            self.beat(self.max_wait_s + 180)
            try:
                probe()
            except TRANSIENT as exc:
                what = what_of(exc)
                if what != waiting:
                    waiting = what
                    self._begin(what, exc)
                raise

        def pause(seconds: float) -> None:
            self.stop_event.wait(seconds)

        try:
            retrying(retry_on=TRANSIENT, attempts=None, initial_s=self.initial_s, max_wait_s=self.max_wait_s,
                     what="runner", sleep=pause)(attempt)
        finally:
            if waiting is not None:
                self.end(waiting)

    def after_failed_proposal(self, n: int, agent: str, exc: BaseException, limits: ProposalSettings,
                              pause_s: Callable[[int], float] | None = None) -> None:
        """The pause after a failed proposal (already journaled): it doubles per failure in a row, up
        to ``limits.max_backoff_s``; from ``limits.max_failed_in_a_row`` on, each is logged as an error."""
        failures = len(self.journal.load().failed_in_a_row)
        wait = (pause_s or (lambda k: backoff_s(k, max_s=limits.max_backoff_s)))(failures)
        escalated = failures >= limits.max_failed_in_a_row
        (log.error if escalated else log.warning)(
            "proposal.skipped", n=n, agent=agent, error=str(exc), failed_in_a_row=failures, escalated=escalated,
            wait_s=wait,
        )
        self.notifier.status(f"proposal failed ({failures} in a row): {_first_line(exc)}; next try in {wait:.0f} s;"
                             f" {self.status_text()}")
        self.beat(wait + 3600)
        self.stop_event.wait(wait)

    def _begin(self, what: WaitWhat, exc: BaseException) -> None:
        reason = _first_line(exc)
        lane = {} if self.lane is None else {"lane": self.lane}
        self.journal.append({"type": "wait", "what": what, "reason": reason, **lane})
        log.warning("loop.waiting", what=what, reason=reason, **lane)
        self.notifier.status(f"waiting for {_LABEL[what]}: {reason}; {self.status_text()}")

    def end(self, what: WaitWhat | None = None) -> None:
        """Journal that the wait is over (also clears a wait a killed daemon left in the journal)."""
        lane = {} if self.lane is None else {"lane": self.lane}
        self.journal.append({"type": "wait", "what": None, **lane})
        log.info("loop.wait_over", what=what, **lane)
        self.notifier.status(self.status_text())

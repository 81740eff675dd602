"""The lanes' threads: one worker per lane (a run, or a wait for that lane's runner), plus the drafter's.

The loop's own thread only schedules: it starts work on free lanes, collects what ended, and passes
on the first error a worker raised (after the other lanes were told to stop).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from autoresearch.ops.guards import Heartbeats
from autoresearch.runners.base import Runner
from autoresearch.runners.lanes import Lane


@dataclass
class LaneSlot:
    lane: Lane
    runner: Runner
    thread: threading.Thread | None = None
    n: int | None = None
    """The experiment this lane works on (None while it waits for its runner or is free)."""

    @property
    def free(self) -> bool:
        return self.thread is None


@dataclass
class LanePool:
    slots: list[LaneSlot]
    changed: threading.Condition = field(default_factory=threading.Condition)
    errors: list[BaseException] = field(default_factory=list)
    drafting: list[threading.Thread] = field(default_factory=list)
    hearts: Heartbeats = field(default_factory=Heartbeats)
    """Each worker beats its own heart while it works (the watchdog's view of a hung lane or drafter)."""
    horizons_s: tuple[float, float] = (float("inf"), float("inf"))
    """(lane, drafter): how long each may go without a beat."""

    def free(self) -> list[LaneSlot]:
        return [s for s in self.slots if s.free]

    def busy_ns(self) -> set[int]:
        return {s.n for s in self.slots if s.n is not None}

    def idle(self) -> bool:
        """No lane works on an experiment (a lane may still wait for its runner) and no draft is being made."""
        return all(s.n is None for s in self.slots) and not self.drafting

    def start(self, slot: LaneSlot, n: int | None, work: Callable[[], None]) -> None:
        slot.n = n
        name, horizon = f"lane-{slot.lane.index}", self.horizons_s[0]
        slot.thread = threading.Thread(target=self._guard(work, lambda: self._release(slot), name, horizon),
                                       name=f"lane-{slot.lane.index}", daemon=True)
        slot.thread.start()

    def start_draft(self, work: Callable[[], None]) -> None:
        holder: list[threading.Thread] = []
        thread = threading.Thread(target=self._guard(work, lambda: self._end_draft(holder[0]), "drafter",
                                                     self.horizons_s[1]), name="drafter",
                                  daemon=True)
        holder.append(thread)
        with self.changed:
            self.drafting.append(thread)
        thread.start()

    def _guard(self, work: Callable[[], None], release: Callable[[], None], name: str,
               horizon_s: float) -> Callable[[], None]:
        def run() -> None:
            try:
                with self.hearts.working(name, horizon_s):
                    work()
            except BaseException as exc:  # handed to the loop's thread, which stops and raises it
                with self.changed:
                    self.errors.append(exc)
            finally:
                release()
                with self.changed:
                    self.changed.notify_all()

        return run

    def _release(self, slot: LaneSlot) -> None:
        with self.changed:
            slot.thread, slot.n = None, None

    def _end_draft(self, thread: threading.Thread) -> None:
        with self.changed:
            self.drafting.remove(thread)

    def wait(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait(timeout)

    def join(self) -> None:
        """Wait for every lane and the drafter to end (after the stop event was set)."""
        threads = [s.thread for s in self.slots if s.thread is not None] + list(self.drafting)
        for thread in threads:
            thread.join()

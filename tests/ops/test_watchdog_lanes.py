"""A per-lane watchdog (issue 17, finding 6): a hung lane or drafter stops systemd's WATCHDOG pings; a run
that waits a long time (queued for a GPU or in a cluster's queue) while its runner beats is not a hang."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoresearch.coordinator.loop import Loop
from autoresearch.ops import guards
from autoresearch.ops.guards import Heartbeats, watchdog
from autoresearch.ops.sdnotify import Notifier
from autoresearch.runners.base import HEARTBEAT_EVERY_S, OnStarted, RunOutcome, RunSpec
from tests.loop_fakes import GatedRunner, lanes_loop, wait_until
from tests.runners.process_helpers import make_runner, make_spec

SHORT = {"evaluate_timeout": 0.2, "check_timeout": 0.2, "git": {"timeout_s": 0.1, "attempts": 1}}
"""Settings whose lane horizon is (0.2 + 0.2) * 2 lanes + 0.1 = 0.9 s once the slack is 0."""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_heart_that_stops_beating_is_late_and_one_that_beats_is_not() -> None:
    clock = Clock()
    hearts = Heartbeats(clock=clock)
    ready, release = threading.Event(), threading.Event()
    beats: list[Any] = []

    def lane(name: str) -> None:
        with hearts.working(name, 10.0):
            beats.append(hearts.beater())  # handed to a runner, which may beat from its own thread
            ready.set()
            release.wait()

    threads = [threading.Thread(target=lane, args=(f"lane-{i}",)) for i in range(2)]
    for t in threads:
        ready.clear()
        t.start()
        ready.wait()
    hearts.beat()  # the test's thread has no heart: ignored
    clock.now += 9.0
    assert hearts.late() == []
    beats[0]()  # lane-0's runner: the run is queued, still alive
    clock.now += 2.0
    assert hearts.late() == ["lane-1"]
    clock.now += 20.0
    assert sorted(hearts.late()) == ["lane-0", "lane-1"]
    release.set()
    for t in threads:
        t.join()
    assert hearts.late() == []  # a worker that ended is no longer watched


def test_watchdog_goes_quiet_for_a_late_heart_and_names_it() -> None:
    notifier = Notifier(watchdog_usec=200_000)
    clock = Clock()
    hearts = Heartbeats(clock=clock)
    entered, release = threading.Event(), threading.Event()

    def drafter() -> None:
        with hearts.working("drafter", 5.0):
            entered.set()
            release.wait()

    thread = threading.Thread(target=drafter)
    thread.start()
    entered.wait()
    with capture_logs() as logs, watchdog(notifier, lambda: True, hearts):
        time.sleep(0.5)
        alive = notifier.sent.count("WATCHDOG=1")
        clock.now += 6.0
        time.sleep(0.5)
        quiet = notifier.sent.count("WATCHDOG=1") - alive
    release.set()
    thread.join()
    assert alive >= 2 and quiet <= 1
    silent = [e for e in logs if e["event"] == "watchdog.silent"]
    assert len(silent) == 1 and silent[0]["late"] == ["drafter"]


@dataclass
class QueuedRunner(GatedRunner):
    """A run that waits behind its gate (queued for a GPU, in a cluster's queue) and beats meanwhile."""

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        gate = self.gates.setdefault(spec.n, threading.Event())
        while not gate.is_set() and not spec.cancel.is_set():
            spec.heartbeat()
            gate.wait(0.05)
        return super().run(spec, on_started)


def _pings_while(loop: Loop, seconds: float) -> tuple[int, int]:
    """Run the loop; (pings in the first 0.5 s, pings in the last second of ``seconds``)."""
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(loop.pool.busy_ns()) == 2, "both lanes running")
        time.sleep(0.5)
        early = loop.notifier.sent.count("WATCHDOG=1")
        time.sleep(seconds - 1.5)
        before = loop.notifier.sent.count("WATCHDOG=1")
        time.sleep(1.0)
        return early, loop.notifier.sent.count("WATCHDOG=1") - before
    finally:
        loop.stop_event.set()
        thread.join(timeout=30)


def _loop(tmp_path: Path, runner: type[GatedRunner]) -> Loop:
    loop, gates = lanes_loop(tmp_path, lambda _c: 1.0, [], lanes=2, limits={"max_experiments": 3}, **SHORT)
    loop.lanes = [(lane, runner(lambda _c: 1.0, gates, name=f"r{lane.index}")) for lane, _ in loop.lanes]
    loop.runner = loop.lanes[0][1]
    loop.notifier = Notifier(watchdog_usec=200_000)
    gates[0] = threading.Event()
    gates[0].set()  # the baseline ends; the two changes after it stay in their lanes
    return loop


def test_a_hung_lane_stops_the_pings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guards, "SLACK_S", 0.0)
    loop = _loop(tmp_path, GatedRunner)  # its runs never end and never beat: hung
    with capture_logs() as logs:
        early, late = _pings_while(loop, 4.0)
    assert early >= 1, "the lanes were alive at first"
    assert late == 0, "a hung lane must stop the pings"
    silent = [e for e in logs if e["event"] == "watchdog.silent"]
    assert silent and all(name.startswith("lane-") for name in silent[0]["late"])


def test_a_long_queued_run_that_beats_is_not_a_hang(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guards, "SLACK_S", 0.0)
    loop = _loop(tmp_path, QueuedRunner)  # queued 4 s, 4 x the lane horizon, beating
    _early, late = _pings_while(loop, 4.0)
    assert late >= 3


def test_the_process_runner_beats_while_a_run_runs(tmp_path: Path) -> None:
    """The real runner's wait loop calls ``RunSpec.heartbeat`` (well within ``HEARTBEAT_EVERY_S``)."""
    beats: list[float] = []
    spec = make_spec(tmp_path, "import time\ntime.sleep(1.0)\nprint('val_bpb: 1.0')\n", budget=5.0,
                     heartbeat=lambda: beats.append(time.monotonic()))
    outcome = make_runner("bwrap").run(spec, lambda _handle: None)
    assert outcome.cause == "ok"
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert len(beats) >= 5 and max(gaps) < HEARTBEAT_EVERY_S

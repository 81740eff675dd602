from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from autoresearch.errors import RepoError
from autoresearch.guards import daemon_lock, watchdog
from autoresearch.sdnotify import Notifier


def test_second_daemon_on_a_repo_is_refused(tmp_path: Path) -> None:
    state = tmp_path / ".git" / "autoresearch"
    refused = pytest.raises(RepoError, match=r"another autoresearch daemon runs on .* \(pid \d+\)")
    with daemon_lock(state), refused, daemon_lock(state):
        pass
    with daemon_lock(state):  # released on exit
        pass


def test_watchdog_pings_only_while_the_loop_is_within_its_horizon() -> None:
    notifier = Notifier(watchdog_usec=400_000)  # interval 0.2 s: pings at most every 0.1 s
    alive = threading.Event()
    alive.set()
    with watchdog(notifier, alive.is_set):
        time.sleep(1.5)
        pings_alive = notifier.sent.count("WATCHDOG=1")
        alive.clear()  # the loop hangs past its horizon
        time.sleep(1.5)
        pings_hung = notifier.sent.count("WATCHDOG=1") - pings_alive
    assert pings_alive >= 2 and pings_hung <= 1


def test_no_watchdog_outside_systemd() -> None:
    notifier = Notifier()
    with watchdog(notifier, lambda: True):
        time.sleep(0.1)
    assert notifier.sent == []

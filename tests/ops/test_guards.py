from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from autoresearch.errors import RepoError
from autoresearch.journal.store import Journal
from autoresearch.ops.guards import daemon_lock, watchdog
from autoresearch.ops.sdnotify import Notifier
from tests.conftest import GIT_ENV, cli, git, make_repo
from tests.subprocs import terminated


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


SLOW_TRAIN = """\
import time

LR = 0.5
time.sleep(60)
print("val_bpb: 1.0")
"""


def test_init_while_a_daemon_runs_is_refused_and_the_daemon_goes_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "research", train=SLOW_TRAIN)
    first = cli("init", str(repo), "--tag", "a", "--runner", "process", "--budget", "60")
    assert first.returncode == 0, first.stderr
    daemon = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env={**os.environ, **GIT_ENV})
    try:
        journal = Journal(repo / ".git" / "autoresearch" / "journal.jsonl")
        deadline = time.monotonic() + 120
        while (pending := journal.load().pending()) is None or pending.phase != "running":
            assert daemon.poll() is None and time.monotonic() < deadline, "the daemon never started its run"
            time.sleep(0.2)
        second = cli("init", str(repo), "--tag", "b")
        assert second.returncode == 2
        assert "cannot init: an autoresearch daemon (or another init) runs on" in second.stderr
        assert f"(pid {daemon.pid})" in second.stderr
        # Nothing changed: same branch, same journal (the daemon's reader would stop on a replaced one).
        assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"  # init never switches the checkout
        assert git(repo, "branch", "--list", "autoresearch/b") == ""
        assert journal.load().tag == "a" and daemon.poll() is None
    finally:
        _, err = terminated(daemon)
    assert daemon.returncode == 0, err.decode()[-2000:]
    assert [e.cause for e in journal.load().completed()] == ["interrupted"]

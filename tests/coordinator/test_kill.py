"""kill -9 at random instants, restart, repeat: no row lost or doubled, no orphan, branch at the last keep."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.journal import ledger
from autoresearch.journal.ledger import parse_results
from autoresearch.journal.store import Journal
from tests.conftest import FAST_TRAIN, GIT_ENV, cli, git, make_repo
from tests.karpathy_analysis import check_session
from tests.subprocs import reaped

KILLS = 22
TOTAL = 30


def _daemon(repo: Path, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo), "--max-experiments", str(TOTAL),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **GIT_ENV})


def _processes_in(repo: Path) -> list[int]:
    """Processes whose working directory is the repo (training runs), excluding zombies."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == repo and (entry / "stat").read_text().split(") ")[1][0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def kill_and_restart(repo: Path, extra: tuple[str, ...] = (), seed: int = 7) -> None:
    rng = random.Random(seed)
    for _ in range(KILLS):
        proc = _daemon(repo, extra)
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with reaped(_daemon(repo, extra)) as final:
        _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err.decode()[-3000:]


def check_consistency(repo: Path, tag: str) -> None:
    state = Journal(repo / ".git/autoresearch/journal.jsonl").load()
    recorded_per_n: dict[int, int] = {}
    for rec in Journal(repo / ".git/autoresearch/journal.jsonl").records():
        if rec.get("phase") == "recorded":
            recorded_per_n[rec["n"]] = recorded_per_n.get(rec["n"], 0) + 1
    assert set(recorded_per_n.values()) == {1}, recorded_per_n  # every experiment recorded exactly once
    done = state.completed()
    assert [e.n for e in done] == list(range(len(done))) and len(done) >= TOTAL
    rows = parse_results((repo / "results.tsv").read_text())
    changes = ledger.rows(state)
    assert len(rows) == len(changes) == TOTAL  # max_experiments counts changes judged, one row each
    assert [r["commit"] for r in rows] == [c.commit[:7] for c in changes]
    # Every proposal that reached a verdict is exactly one row (a distinct commit); the baseline is one
    # row however often it ran; repeats and confirmations (measure_commit) measure a row's commit again.
    assert all(e.commit == e.measure_commit for e in done if e.measure_commit)
    proposals = [e.commit for e in done if not e.baseline and not e.measure_commit]
    assert sorted(c.commit for c in changes if not c.baseline) == sorted(proposals)
    assert rows[0]["description"].startswith("baseline") and sum(c.baseline for c in changes) == 1
    check_session(repo)  # karpathy's notebook reads it right
    best = state.best()
    assert best is not None
    assert git(repo, "rev-parse", f"autoresearch/{tag}") == best.commit
    assert git(repo, "status", "--porcelain") == ""
    status = json.loads(cli("status", str(repo), "--json").stdout)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("keep", "discard", "crash")}
    assert {k: status[k] for k in counts} == counts and status["experiments"] == TOTAL
    assert status["run_count"] == len(done)
    assert status["running"] is None


def kill_test_repo(tmp_path: Path, runner: str) -> Path:
    train = FAST_TRAIN.replace("SLEEP = 0.05", "SLEEP = 0.4")
    repo = make_repo(tmp_path / "r", train=train).resolve()
    assert cli("init", str(repo), "--tag", "k", "--budget", "2", "--runner", runner).returncode == 0
    return repo


def assert_recovery_exercised(repo: Path) -> None:
    interrupted = [e for e in Journal(repo / ".git/autoresearch/journal.jsonl").load().completed()
                   if e.cause == "interrupted"]
    assert interrupted, "no kill landed during a run; the test did not exercise recovery"


@pytest.mark.slow
def test_kill_nine_at_random_instants(tmp_path: Path) -> None:
    repo = kill_test_repo(tmp_path, "process")
    kill_and_restart(repo)
    time.sleep(0.2)
    assert _processes_in(repo) == []
    check_consistency(repo, "k")
    assert_recovery_exercised(repo)

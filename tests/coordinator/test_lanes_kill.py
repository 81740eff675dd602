"""kill -9 a two-lane daemon at random instants (often with both lanes training), restart, repeat: every
run is reaped and recorded once, rows stay in completion order, the branch holds only measured keeps."""

from __future__ import annotations

import datetime as dt
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
from tests.subprocs import reaped

KILLS = 8
TOTAL = 12
ROOT = Path(__file__).resolve().parents[2]


def _daemon(repo: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **GIT_ENV, "PYTHONPATH": f"{ROOT / 'daemon'}{os.pathsep}{ROOT}"}
    return subprocess.Popen([sys.executable, "-m", "tests.lanes_daemon", str(repo), str(TOTAL)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def _at(text: str | None) -> float:
    return dt.datetime.fromisoformat(str(text)).timestamp()


@pytest.mark.slow
def test_kill_nine_with_two_lanes_in_flight(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", train=FAST_TRAIN.replace("SLEEP = 0.05", "SLEEP = 0.8")).resolve()
    assert cli("init", str(repo), "--tag", "k", "--budget", "3", "--runner", "process").returncode == 0
    rng = random.Random(11)
    for _ in range(KILLS):
        proc = _daemon(repo)
        time.sleep(rng.uniform(1.0, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with reaped(_daemon(repo)) as final:
        _, err = final.communicate(timeout=600)
    assert final.returncode == 0, err.decode()[-3000:]

    journal = Journal(repo / ".git/autoresearch/journal.jsonl")
    recorded = [r["n"] for r in journal.records() if r.get("phase") == "recorded"]
    assert len(recorded) == len(set(recorded))  # every experiment recorded exactly once
    state = journal.load()
    done = state.completed()
    assert not state.open() and len(done) >= TOTAL
    rows = parse_results((repo / "results.tsv").read_text())
    changes = ledger.rows(state)  # verdict order, no row lost: every proposal once, the baseline once
    assert [r["commit"] for r in rows] == [c.commit[:7] for c in changes] and len(changes) >= TOTAL
    proposals = [e.commit for e in done if not e.baseline and not e.measure_commit]
    assert sorted(c.commit for c in changes if not c.baseline) == sorted(proposals)
    interrupted = [e for e in done if e.cause == "interrupted"]
    pairs = [(a, b) for a in interrupted for b in interrupted
             if a.lane == 0 and b.lane == 1 and abs(_at(a.phase_at("finished")) - _at(b.phase_at("finished"))) < 5]
    assert pairs, "no kill landed while both lanes trained; the test did not exercise recovery"
    best = state.best()
    assert best is not None and git(repo, "rev-parse", "autoresearch/k") == best.commit
    chain = git(repo, "rev-list", "--first-parent", f"{done[0].commit}..autoresearch/k").split()
    # A fresh run of the best for a confirmation is a keep of a commit already kept: one commit in the chain.
    keeps = dict.fromkeys(e.commit for e in done if e.status == "keep" and e.commit != done[0].commit)
    assert chain[::-1] == list(keeps)
    assert git(repo, "status", "--porcelain") == ""

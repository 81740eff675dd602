"""The daemon with runner = "slurm" on a real one-node cluster: two lanes as jobs at once, and a
``kill -9`` of the daemon while both jobs run: the restarted daemon re-attaches to them (no job run
twice, none orphaned, nothing recorded as interrupted)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from autoresearch.journal.ledger import parse_results
from autoresearch.journal.store import Journal
from autoresearch.runners.slurm_cli import RealSlurm
from tests.conftest import FAST_TRAIN, GIT_ENV, NO_REPEATS, cli, git, make_repo
from tests.subprocs import reaped

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]
ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    (tmp_path / "shared").mkdir(exist_ok=True)  # the cluster's shared file system: init checks it exists
    return {"AUTORESEARCH_SLURM__SHARED_DIR": str(tmp_path / "shared"), "AUTORESEARCH_SLURM__POLL_S": "0.5",
            "AUTORESEARCH_LANES": "2", **more}


def _daemon(repo: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **GIT_ENV, **NO_REPEATS, **env})


def _running(repo: Path) -> dict[int, dict[str, Any]]:
    """The latest journaled handle of each experiment that is running now."""
    handles: dict[int, dict[str, Any]] = {}
    path = repo / ".git/autoresearch/journal.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if record.get("phase") == "running":
            handles[record["n"]] = record["handle"]
        elif record.get("phase") in ("finished", "recorded"):
            handles.pop(record["n"], None)
    return handles


def _started(repo: Path, count: int, daemon: subprocess.Popen[bytes] | None = None) -> dict[int, dict[str, Any]]:
    """The handles of the jobs running at once, once ``count`` of them are (or what there is after 120 s)."""
    started: dict[int, dict[str, Any]] = {}
    end = time.monotonic() + 120
    while time.monotonic() < end:
        started = {n: h for n, h in _running(repo).items() if h.get("started_at")}
        if len(started) >= count:
            break
        assert daemon is None or daemon.poll() is None, daemon.stderr.read().decode()[-3000:] if daemon.stderr else ""
        time.sleep(0.2)
    return started


def _job_ids(journal: Journal) -> dict[int, set[str]]:
    ids: dict[int, set[str]] = defaultdict(set)
    for record in journal.records():
        if record.get("phase") == "running" and record["handle"].get("job_id"):
            ids[record["n"]].add(str(record["handle"]["job_id"]))
    return ids


@pytest.mark.slow
def test_kill_nine_with_two_jobs_running_reattaches_and_loses_nothing(tmp_path: Path) -> None:
    # After its sleep the run writes into its HOME (the run's layer): a restart must not sweep a live job's layer.
    train = FAST_TRAIN.replace("SLEEP = 0.05", "SLEEP = 6.0").replace(
        'print("step 1/1")', 'open(os.path.join(os.environ["HOME"], "after-sleep"), "w").write("x")\nprint("step 1/1")')
    repo = make_repo(tmp_path / "r", train=train).resolve()
    env = _env(tmp_path, AUTORESEARCH_LIMITS__MAX_EXPERIMENTS="4")
    init = cli("init", str(repo), "--tag", "k", "--runner", "slurm", "--budget", "12", env=env)
    assert init.returncode == 0, init.stderr[-2000:]
    with reaped(_daemon(repo, env)) as first:
        started = _started(repo, count=2, daemon=first)
        assert len(started) == 2, "two jobs never ran at once"
        first.send_signal(signal.SIGKILL)
        first.wait()
    jobs = {n: str(h["job_id"]) for n, h in started.items()}
    for job_id in jobs.values():  # the jobs outlive the daemon
        info = RealSlurm().job(job_id)
        assert info is not None and info.state in ("RUNNING", "COMPLETING", "COMPLETED"), info
    with reaped(_daemon(repo, env)) as second:
        _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err.decode()[-3000:]

    journal = Journal(repo / ".git/autoresearch/journal.jsonl")
    state = journal.load()
    done = {e.n: e for e in state.completed()}
    for n in jobs:
        assert done[n].cause == "ok", (n, done[n].cause, done[n].detail)  # re-attached, not interrupted
        assert done[n].queued_s is not None
    ids = _job_ids(journal)
    assert all(len(v) == 1 for v in ids.values()), ids  # no run submitted twice
    assert {n: next(iter(ids[n])) for n in jobs} == jobs
    assert not [e for e in state.completed() if e.cause == "interrupted"]
    assert not state.open()
    leftover = [j for j in RealSlurm().jobs("ar-") if not j.ended and j.job_id in {i for v in ids.values() for i in v}]
    assert not leftover  # none orphaned
    rows = parse_results((repo / "results.tsv").read_text())
    assert len(rows) == 4 and git(repo, "status", "--porcelain") == ""


@pytest.mark.slow
def test_the_example_runs_two_lanes_as_slurm_jobs(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    repo = tmp_path / "example"
    assert cli("example", str(repo)).returncode == 0
    config = repo / "autoresearch.toml"  # as in test_lanes_example: the self-reported metric
    config.write_text("".join(line for line in config.read_text().splitlines(True)
                              if not line.startswith("evaluate =")))
    git(repo, "commit", "-qam", "no evaluator")
    env = _env(tmp_path, AUTORESEARCH_RUNNER="slurm", AUTORESEARCH_BUDGET="3",
               AUTORESEARCH_LIMITS__MAX_EXPERIMENTS="3", AUTORESEARCH_GRACE="60")
    init = cli("init", str(repo), "--tag", "lanes", env=env, timeout=600)
    assert init.returncode == 0, init.stderr[-3000:]
    with reaped(_daemon(repo, env)) as daemon:
        _, err = daemon.communicate(timeout=600)
    assert daemon.returncode == 0, err.decode()[-3000:]
    journal = Journal(repo / ".git/autoresearch/journal.jsonl")
    state = journal.load()
    done = state.completed()
    assert len(parse_results((repo / "results.tsv").read_text())) == 3
    assert {e.lane for e in done} == {0, 1} and all(e.cause == "ok" for e in done), [(e.cause, e.detail) for e in done]
    ids = _job_ids(journal)
    assert len({i for v in ids.values() for i in v}) == len(done)  # one job per run
    for e in done:
        log = repo / ".git/autoresearch/runs" / str(e.n) / "run.log"
        assert "val_bpb" in log.read_text()  # the log where every runner leaves it
        assert e.queued_s is not None and e.queued_s >= 0
    spans = sorted((e.phase_at("running") or "", e.phase_at("finished") or "") for e in done)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "the two lanes never ran at once"


def test_an_outside_scancel_is_journaled_and_a_cancelled_baseline_runs_again(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", train=FAST_TRAIN.replace("SLEEP = 0.05", "SLEEP = 4.0")).resolve()
    env = _env(tmp_path, AUTORESEARCH_LIMITS__MAX_EXPERIMENTS="2", AUTORESEARCH_LANES="1")
    assert cli("init", str(repo), "--tag", "c", "--runner", "slurm", "--budget", "20", env=env).returncode == 0
    with reaped(_daemon(repo, env)) as daemon:
        started = _started(repo, count=1)
        assert started, "the baseline's job never started"
        subprocess.run(["scancel", str(next(iter(started.values()))["job_id"])], check=True)
        _, err = daemon.communicate(timeout=300)
    assert daemon.returncode == 0, err.decode()[-3000:]
    done = Journal(repo / ".git/autoresearch/journal.jsonl").load().completed()
    assert done[0].cause == "cancelled" and "cancelled outside the daemon" in (done[0].detail or "")
    again = [e for e in done[1:] if e.baseline]
    assert done[0].baseline and again and again[0].cause == "ok"  # not the script's fault: run again
    rows = parse_results((repo / "results.tsv").read_text())
    assert rows[0]["description"] == "baseline" and rows[0]["status"] == "keep"  # its re-run's row


def test_a_stopped_daemon_leaves_no_job_running(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", train=FAST_TRAIN.replace("SLEEP = 0.05", "SLEEP = 60.0")).resolve()
    env = _env(tmp_path, AUTORESEARCH_LIMITS__MAX_EXPERIMENTS="4")
    assert cli("init", str(repo), "--tag", "s", "--runner", "slurm", "--budget", "90", env=env).returncode == 0
    with reaped(_daemon(repo, env)) as daemon:
        started = _started(repo, count=1)
        assert started, "no job started"
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=120)
    ids = {i for v in _job_ids(Journal(repo / ".git/autoresearch/journal.jsonl")).values() for i in v}
    end = time.monotonic() + 30
    while time.monotonic() < end and [j for j in RealSlurm().jobs("ar-") if j.job_id in ids and not j.ended]:
        time.sleep(0.5)
    assert not [j for j in RealSlurm().jobs("ar-") if j.job_id in ids and not j.ended]
    done = Journal(repo / ".git/autoresearch/journal.jsonl").load().completed()
    assert done and all(e.cause == "interrupted" for e in done), [(e.n, e.cause) for e in done]

"""status for Slurm lanes: each lane's job id, state, node and queue time, from the journaled handle and
``squeue`` (a fake queue, then the real cluster through the CLI)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from rich.console import Console

from autoresearch.cli.render import status_table
from autoresearch.cli.slurm_status import annotate
from autoresearch.journal.status import summarize
from autoresearch.journal.store import Journal
from autoresearch.runners.lanes import Lane
from autoresearch.runners.slurm_ops import FakeSlurmQueue, QueuedJob
from tests.conftest import cli, git, make_repo

T0 = "2026-11-26T10:00:00.000+00:00"
SUBMITTED = 1_800_000_000.0


def slurm_journal(path: Path, jobs: dict[int, dict[str, object]], commit: str = "a" * 40) -> Journal:
    """The baseline recorded, then one experiment per lane whose training is the Slurm job ``jobs[lane]``."""
    j = Journal(path)
    if not path.exists():
        j.append({"type": "session", "tag": "t"})
    n = 0
    j.phase(n, "proposed", parent="p" * 40, description="baseline", content="X = 1\n", at=T0, when=T0, lane=0,
            baseline=True)
    j.phase(n, "committed", commit=commit, lane=0)
    j.phase(n, "finished", cause="ok", metric=1.0, lane=0)
    j.phase(n, "recorded", status="keep", lane=0)
    for lane, handle in jobs.items():
        n += 1
        j.phase(n, "proposed", parent="p" * 40, description=f"change {n}", content="X = 2\n", at=T0, when=T0,
                lane=lane)
        j.phase(n, "committed", commit=commit, lane=lane, at=T0)
        j.phase(n, "running", handle={"runner": "slurm", "attempt": 1, "node": None, "started_at": None,
                                      "submitted_at": SUBMITTED, **handle}, lane=lane, at=T0)
    return j


def test_each_lane_shows_its_job_id_state_node_and_queue_time(tmp_path: Path) -> None:
    state = slurm_journal(tmp_path / "j.jsonl", {
        0: {"job_id": "41", "started_at": SUBMITTED + 7.5, "node": "gpu-a"},
        1: {"job_id": "42", "attempt": 2},
    }).load()
    summary = summarize(state, "min", lanes=[Lane(0), Lane(1), Lane(2)], budget=300.0)
    queue = FakeSlurmQueue(known={"41": QueuedJob("41", "RUNNING", "gpu-a"),
                                  "42": QueuedJob("42", "PENDING", "", "Resources")})
    annotate(summary, state, queue, now=SUBMITTED + 60)
    jobs = [lane["job"] for lane in summary["lanes"]]
    assert jobs[0] == {"job_id": "41", "state": "RUNNING", "node": "gpu-a", "reason": None, "attempt": 1,
                       "queued_s": 7.5, "queued": False}
    assert jobs[1] is not None and (jobs[1]["state"], jobs[1]["reason"], jobs[1]["queued_s"], jobs[1]["queued"]) \
        == ("PENDING", "Resources", 60.0, True)
    assert jobs[2] is None and summary["slurm"] == "answers"
    console = Console(width=160, record=True)
    console.print(status_table({**summary, "metric": "m"}))
    text = console.export_text()
    assert "lane 0 job" in text and "job 41 RUNNING on gpu-a, queued 8s" in text
    assert "job 42 PENDING (Resources), queued 60s so far, attempt 2" in text
    assert "slurmctld" not in text


def test_a_down_controller_shows_what_the_journal_last_saw(tmp_path: Path) -> None:
    state = slurm_journal(tmp_path / "j.jsonl", {0: {"job_id": "41", "started_at": SUBMITTED + 3, "node": "n1"}}).load()
    summary = summarize(state, "min", budget=300.0)
    annotate(summary, state, FakeSlurmQueue(down="connection refused"), now=SUBMITTED + 60)
    job = summary["lanes"][0]["job"]
    assert (job["state"], job["node"], job["queued_s"]) == ("RUNNING?", "n1", 3.0)
    assert summary["slurm"] == "does not answer: connection refused"
    console = Console(width=160, record=True)
    console.print(status_table({**summary, "metric": "m"}))
    text = console.export_text()
    assert "slurm job" in text and "job 41 RUNNING? on n1, queued 3s" in text
    assert "slurmctld     │ does not answer: connection refused" in text
    waiting = {**summary, "metric": "m", "waiting": {"what": "slurm", "reason": "connection refused",
                                                     "elapsed_s": 12.0}}
    console = Console(width=160, record=True)
    console.print(status_table(waiting))
    assert "for the Slurm controller (slurmctld) for 12s: connection refused" in console.export_text()
    forgotten = summarize(state, "min", budget=300.0)
    annotate(forgotten, state, FakeSlurmQueue(), now=SUBMITTED + 60)
    assert forgotten["lanes"][0]["job"]["state"] == "gone"


def test_local_runs_and_finished_trainings_ask_no_controller(tmp_path: Path) -> None:
    j = slurm_journal(tmp_path / "j.jsonl", {0: {"job_id": "41"}})
    j.phase(1, "finished", cause="ok", metric=1.0, lane=0)  # the job ended: evaluating is not the job
    summary = summarize(j.load(), "min", budget=300.0)
    annotate(summary, j.load(), FakeSlurmQueue(down="must not be asked"))
    assert summary["lanes"][0]["job"] is None and summary["slurm"] is None


# -- the CLI against the real cluster ----------------------------------------------------------------


def _submit(name: str, seconds: int) -> str:
    out = subprocess.run(["sbatch", "--parsable", "-J", name, "-o", "/dev/null", "--gres=gpu:1",
                          "--wrap", f"sleep {seconds}"], capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip().split(";")[0]


def _state(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-o", "%T", "-j", job], capture_output=True, text=True,
                          timeout=30).stdout.strip()


@pytest.mark.slurm
def test_status_json_and_table_show_the_real_jobs(slurm_cluster: None, tmp_path: Path) -> None:
    """Two jobs take the 2 fake GPUs; a third waits for Resources: status shows all three as squeue does."""
    repo = make_repo(tmp_path / "r")
    assert cli("init", str(repo), "--runner", "process").returncode == 0
    name = f"slurmops-status-{uuid.uuid4().hex[:6]}"
    jobs = [_submit(name, 60) for _ in range(3)]
    try:
        deadline = time.monotonic() + 30
        while sorted(_state(j) for j in jobs) != ["PENDING", "RUNNING", "RUNNING"] and time.monotonic() < deadline:
            time.sleep(0.3)
        now = time.time()
        slurm_journal(repo / ".git/autoresearch/journal.jsonl", {
            lane: {"job_id": job, "submitted_at": now - 5, "started_at": now - 4 if lane < 2 else None}
            for lane, job in enumerate(jobs)}, commit=git(repo, "rev-parse", "HEAD"))
        result = cli("status", str(repo), "--json")
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        shown = {lane["lane"]: lane["job"] for lane in summary["lanes"]}
        assert summary["slurm"] == "answers"
        assert [shown[i]["state"] for i in range(3)] == ["RUNNING", "RUNNING", "PENDING"]
        assert shown[0]["node"] and shown[2]["node"] is None and shown[2]["reason"] == "Resources"
        assert shown[0]["queued_s"] == pytest.approx(1.0, abs=0.01) and shown[2]["queued_s"] >= 5
        table = cli("status", str(repo), env={"COLUMNS": "200"})
        assert f"job {jobs[2]} PENDING (Resources), queued" in table.stdout, table.stdout
    finally:
        subprocess.run(["scancel", *jobs], check=False, timeout=30)

"""The Slurm runner against a real one-node cluster (``slurm_cluster``): a run is a job in the bubblewrap
sandbox with its own GPU, a runaway is cancelled at its deadline, ``scancel`` from outside is recorded
with its reason, a node failure is run again, not a crash."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autoresearch.runners.slurm_cli import JobInfo, RealSlurm
from tests.runners.slurm_helpers import collect, runner, spec

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

SHOW = """\
import os, sys
print("visible=" + os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
print("in_sandbox=" + str(not os.path.exists("/etc/shadow")))
print("noise on stderr", file=sys.stderr)
print("val_bpb: 1.5")
"""
RUNAWAY = """\
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("started", flush=True)
time.sleep(600)
"""
SLEEP = "import time\nprint('started', flush=True)\ntime.sleep({s})\nprint('val_bpb: 1.0')\n"


def _when(handles: list[dict[str, Any]], test: Callable[[dict[str, Any]], bool], then: Callable[[str], None],
          timeout: float = 60) -> threading.Thread:
    """Calls ``then(job_id)`` from a thread once a journaled handle passes ``test``."""

    def watch() -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if handles and test(handles[-1]):
                then(str(handles[-1]["job_id"]))
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _state(job_id: str) -> JobInfo:
    info = RealSlurm().job(job_id)
    assert info is not None
    return info


def test_a_run_is_a_sandboxed_job_with_its_own_gpu(tmp_path: Path) -> None:
    handles, on_started = collect()
    run = spec(tmp_path, budget=20, train=SHOW)
    outcome = runner(tmp_path, RealSlurm(), poll_s=0.5).run(run, on_started)
    assert outcome.cause == "ok", (outcome, run.log_path.read_text())
    log = run.log_path.read_text()
    assert "in_sandbox=True" in log and "noise on stderr" in log
    assert "visible=0" in log or "visible=1" in log  # the fake GPU Slurm gave the job
    assert "noise" not in run.stdout_path.read_text() if run.stdout_path else False  # stdout kept apart
    assert outcome.queued_s is not None and outcome.queued_s >= 0
    final = handles[-1]
    assert final["job_id"] and final["node"] and final["started_at"] >= final["submitted_at"]
    assert _state(final["job_id"]).state == "COMPLETED"
    # The run's files are on the shared folder, in the session's own runs folder there.
    assert (tmp_path / "repo/.git/autoresearch/runs").resolve().parent == (tmp_path / "shared/rid/runs").resolve()


def test_a_runaway_is_cancelled_at_its_deadline(tmp_path: Path) -> None:
    handles, on_started = collect()
    t0 = time.monotonic()
    outcome = runner(tmp_path, RealSlurm(), poll_s=0.5).run(spec(tmp_path, budget=2, grace=1, train=RUNAWAY),
                                                            on_started)
    took = time.monotonic() - t0
    job = _state(handles[-1]["job_id"])
    assert outcome.cause == "timeout" and job.state == "CANCELLED", (outcome, job)
    # budget + grace from the job's start (whole seconds on Slurm's side), then TERM (ignored), then SIGKILL
    assert 2.5 <= outcome.wall_s < 15 and took < 40
    assert outcome.kill_latency_s is not None and outcome.kill_latency_s > 0


def test_at_the_deadline_the_sandboxed_command_gets_sigterm_first(tmp_path: Path) -> None:
    graceful = ("import signal, sys, time\n"
                "signal.signal(signal.SIGTERM, lambda *_: (print('got TERM', flush=True), sys.exit(3)))\n"
                "print('started', flush=True)\ntime.sleep(600)\n")
    run = spec(tmp_path, budget=2, grace=1, train=graceful, command="python3 train.py; echo after")
    outcome = runner(tmp_path, RealSlurm(), poll_s=0.5).run(run, lambda _h: None)
    assert outcome.cause == "timeout" and "got TERM" in run.log_path.read_text(), run.log_path.read_text()


def test_scancel_from_outside_is_recorded_with_its_reason(tmp_path: Path) -> None:
    handles, on_started = collect()
    watcher = _when(handles, lambda h: bool(h.get("started_at")),
                    lambda job: subprocess.run(["scancel", job], check=True))
    outcome = runner(tmp_path, RealSlurm(), poll_s=0.5).run(spec(tmp_path, budget=60, train=SLEEP.format(s=60)),
                                                            on_started)
    watcher.join()
    assert outcome.cause == "cancelled" and "cancelled outside the daemon" in outcome.detail
    assert "reason" in outcome.detail and outcome.wall_s < 30


def test_a_node_failure_is_run_again_not_a_crash(tmp_path: Path) -> None:
    handles, on_started = collect()
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True, check=True)
    node = nodes.stdout.split()[0]

    def fail_node(_job: str) -> None:
        try:
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=autoresearch-test"],
                           check=True)
            time.sleep(2)
        finally:  # the node is shared: always back in service
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=False)

    watcher = _when(handles, lambda h: bool(h.get("started_at")) and h["attempt"] == 1, fail_node)
    outcome = runner(tmp_path, RealSlurm(), poll_s=0.5).run(spec(tmp_path, budget=30, train=SLEEP.format(s=3)),
                                                            on_started)
    watcher.join()
    first = next(h for h in handles if h["attempt"] == 1 and h["job_id"])
    assert _state(first["job_id"]).state == "NODE_FAIL"
    assert outcome.cause == "ok" and handles[-1]["attempt"] == 2 and handles[-1]["job_id"] != first["job_id"]


@pytest.mark.docker
def test_inner_docker_scancel_leaves_no_container(tmp_path: Path, docker_client: Any, image: str,
                                                   repo_id: str) -> None:
    handles, on_started = collect()
    seen: list[str] = []

    def cancel_when_the_container_runs(job: str) -> None:
        label = f"autoresearch.repo={repo_id}"
        end = time.monotonic() + 60
        while time.monotonic() < end and not docker_client.containers.list(filters={"label": label}):
            time.sleep(0.2)
        seen.extend(c.name for c in docker_client.containers.list(filters={"label": label}))
        subprocess.run(["scancel", job], check=True)

    watcher = _when(handles, lambda h: bool(h.get("started_at")), cancel_when_the_container_runs)
    run = runner(tmp_path, RealSlurm(), repo_id=repo_id, docker={"image": image}, inner="docker", gres=None,
                 poll_s=0.5)
    outcome = run.run(spec(tmp_path, budget=60, train=RUNAWAY), on_started)
    watcher.join()
    assert seen == [handles[-1]["name"]]  # the container ran, named after its job
    assert outcome.cause == "cancelled", (outcome, spec(tmp_path).log_path.read_text())
    end = time.monotonic() + 15
    while time.monotonic() < end and docker_client.containers.list(all=True, filters={"name": seen[0]}):
        time.sleep(0.2)
    assert not docker_client.containers.list(all=True, filters={"name": seen[0]})  # killed by name, removed

"""A real daemon with ``runner = "slurm"`` and 2 lanes on this host (no GPU): ``init`` checks the
cluster, ``status`` shows the running job as the runner journaled it and as squeue sees it, and a
SIGTERM leaves no job behind."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import GIT_ENV, NO_CGROUPS, NO_REPEATS, cli, git, make_repo
from tests.subprocs import reaped, terminated

SLOW = "import time\nLR = 0.5\ntime.sleep(20)\nprint('val_bpb: 1.0')\n"


def _squeue(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-o", "%T", "-j", job], capture_output=True, text=True,
                          timeout=30).stdout.strip()


@contextlib.contextmanager
def cancelled_under(folder: Path) -> Iterator[None]:
    """Whatever happens in the block, no job working under ``folder`` is left (a daemon killed by a
    failing test leaves its jobs running)."""
    try:
        yield
    finally:
        listed = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, timeout=30)
        ours = [line.split()[0] for line in listed.stdout.splitlines()
                if len(line.split()) == 2 and line.split()[1].startswith(str(folder))]
        if ours:
            subprocess.run(["scancel", *ours], check=False, timeout=30)


@pytest.mark.slurm
@pytest.mark.slow
def test_status_shows_the_daemon_s_job_and_a_stop_leaves_none(slurm_cluster: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", train=SLOW).resolve()
    shared = tmp_path / "shared"
    shared.mkdir()
    (repo / "autoresearch.toml").write_text(
        'runner = "slurm"\nlanes = 2\nbudget = 60\nmetric = "val_bpb"\n'
        f'[slurm]\nshared_dir = "{shared}"\npoll_s = 0.5\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "slurm config")
    init = cli("init", str(repo), "--tag", "s", env={"COLUMNS": "300"}, timeout=300)
    assert init.returncode == 0, init.stdout + init.stderr
    assert "slurm: each run is one job in partition the cluster's default, debug, asking for --gres=gpu:1" \
        in init.stdout
    daemon = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **GIT_ENV, **NO_REPEATS, **NO_CGROUPS})
    with reaped(daemon), cancelled_under(tmp_path):
        deadline = time.monotonic() + 120
        job = None
        while time.monotonic() < deadline:
            lanes = json.loads(cli("status", str(repo), "--json").stdout)["lanes"]
            job = lanes[0].get("job")
            # squeue may list it RUNNING before the daemon's next poll journals the start: wait for both
            if job is not None and job["state"] == "RUNNING" and job["node"] and not job["queued"]:
                break
            time.sleep(0.5)
        assert job is not None and job["state"] == "RUNNING", job
        assert [lane["lane"] for lane in lanes] == [0, 1] and lanes[1]["job"] is None, "the baseline runs alone"
        assert job["attempt"] == 1 and not job["queued"] and 0 <= job["queued_s"] < 30, job
        assert _squeue(job["job_id"]) == "RUNNING"
        table = cli("status", str(repo), env={"COLUMNS": "200"}).stdout
        assert f"job {job['job_id']} RUNNING on {job['node']}, queued" in table, table
        terminated(daemon, timeout=90)
    assert daemon.returncode == 0
    assert _squeue(job["job_id"]) in ("", "CANCELLED", "COMPLETED", "COMPLETING"), "the stop cancels its job"

"""Operations on a Slurm cluster outside a run: init's checks, the queue adapter (fake and real)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from autoresearch.cli.slurm_init import check_cluster
from autoresearch.errors import ConfigError
from autoresearch.ops.config import Settings, load_settings
from autoresearch.runners.slurm_ops import FakeSlurmQueue, QueuedJob, SlurmCommands, parse_line
from autoresearch.runners.slurm_script import resource_args
from tests.conftest import cli, git, make_repo

PREFIX = "slurmops-"
"""The name prefix of this file's jobs (the runner's tests use their own)."""


def slurm_settings(tmp_path: Path, **slurm: object) -> Settings:
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    return load_settings(tmp_path, runner="slurm", lanes=2, slurm={"shared_dir": str(shared), **slurm})


def test_resource_args_map_the_settings_in_slurm_syntax(tmp_path: Path) -> None:
    s = slurm_settings(tmp_path, partition="gpu", account="lab", qos="long", gres="gpu:a100:2", cpus_per_task=8,
                       mem="32G", extra_args=["--constraint=ib"])
    assert resource_args(s.slurm) == ["--partition=gpu", "--account=lab", "--qos=long", "--gres=gpu:a100:2",
                                      "--cpus-per-task=8", "--mem=32G", "--constraint=ib"]
    assert resource_args(slurm_settings(tmp_path, gres=None).slurm) == []


def test_init_check_says_partition_and_resources_and_leaves_nothing(tmp_path: Path) -> None:
    s = slurm_settings(tmp_path, mem="4G")
    queue = FakeSlurmQueue()
    lines = check_cluster(s, queue)
    assert "partition the cluster's default, debug, asking for --gres=gpu:1 --mem=4G (up to 2 jobs" in lines[0]
    assert f"shared_dir {tmp_path / 'shared'} is writable" in lines[1]
    assert "Job 1 to start" in lines[2]
    assert queue.submitted == [["--gres=gpu:1", "--mem=4G"]]
    assert list((tmp_path / "shared").iterdir()) == [], "the write probe is removed"


@pytest.mark.parametrize(("shared", "message"), [
    ("/nonexistent/shared", r"slurm.shared_dir \(flag --shared-dir\): /nonexistent/shared is not an existing "
                            r"folder; create it"),
    ("/proc", r"/proc is not writable by this user"),
])
def test_init_check_refuses_a_shared_dir_it_cannot_use(tmp_path: Path, shared: str, message: str) -> None:
    s = load_settings(tmp_path, runner="slurm", slurm={"shared_dir": shared})
    with pytest.raises(ConfigError, match=message):
        check_cluster(s, FakeSlurmQueue())


@pytest.mark.parametrize(("slurm", "message"), [
    ({}, r'runner = "slurm" needs slurm.shared_dir'),
    ({"shared_dir": "rel/dir"}, r"slurm.shared_dir must be an absolute path"),
])
def test_settings_refuse_a_missing_or_relative_shared_dir(tmp_path: Path, slurm: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, runner="slurm", slurm=slurm)


def test_init_check_names_a_down_controller_and_a_refused_job(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"runner = \"slurm\" \(flag --runner\): connection refused; start "
                                          r"slurmctld.*Nothing was changed") as down:
        check_cluster(slurm_settings(tmp_path), FakeSlurmQueue(down="connection refused"))
    assert down.value.exit_code == 2
    with pytest.raises(ConfigError, match=r"\[slurm\] \(partition from flag --partition\): the cluster refuses a job "
                                          r"with --partition=nope --gres=gpu:1: .*invalid partition"):
        check_cluster(slurm_settings(tmp_path, partition="nope"), FakeSlurmQueue(refuse="invalid partition"))


def test_parse_line_reads_squeue_rows() -> None:
    assert parse_line("12|RUNNING|node3|None") == QueuedJob("12", "RUNNING", "node3", "")
    assert parse_line("13|PENDING||Resources") == QueuedJob("13", "PENDING", "", "Resources")
    assert parse_line("garbage") is None


# -- against the real cluster ---------------------------------------------------------------------------


def _submit(name: str, command: str, *args: str) -> str:
    out = subprocess.run(["sbatch", "--parsable", "-J", name, "-o", "/dev/null", *args, "--wrap", command],
                         capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip().split(";")[0]


@pytest.mark.slurm
def test_real_queue_lists_jobs_by_id_with_state_and_node(slurm_cluster: None) -> None:
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    job = _submit(name, "sleep 30", "--gres=gpu:1")
    try:
        queue = SlurmCommands()
        queue.ping()
        deadline = time.monotonic() + 30
        while (seen := queue.jobs([job, "999999"]).get(job)) is not None and seen.state == "PENDING" \
                and time.monotonic() < deadline:
            time.sleep(0.3)
        assert seen is not None and seen.state == "RUNNING" and seen.node, seen
        assert queue.jobs(["999999"]) == {}, "a job the controller does not know is simply absent"
    finally:
        subprocess.run(["scancel", job], check=False, timeout=30)


@pytest.mark.slurm
def test_real_init_check_asks_the_controller(slurm_cluster: None, tmp_path: Path) -> None:
    lines = check_cluster(slurm_settings(tmp_path), SlurmCommands())
    assert "partition the cluster's default, debug, asking for --gres=gpu:1" in lines[0]
    assert "sbatch --test-only answers: sbatch: Job" in lines[2]
    with pytest.raises(ConfigError, match=(
            r"the cluster refuses a job with --partition=no-such-partition --gres=gpu:1: .*invalid partition")):
        check_cluster(slurm_settings(tmp_path, partition="no-such-partition"), SlurmCommands())


@pytest.mark.slurm
def test_real_init_refusal_exits_2_and_leaves_nothing(slurm_cluster: None, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    shared = tmp_path / "shared"
    shared.mkdir()
    env = {"AUTORESEARCH_SLURM__SHARED_DIR": str(shared), "AUTORESEARCH_SLURM__GRES": "gpu:9"}
    result = cli("init", str(repo), "--runner", "slurm", "--prepare", "python3 prepare.py", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "[slurm] (gres from env AUTORESEARCH_SLURM__GRES): the cluster refuses a job with --gres=gpu:9" \
        in result.stderr
    assert not (repo / ".git" / "autoresearch").exists() and list(shared.iterdir()) == []
    assert git(repo, "branch", "--list", "autoresearch/*") == ""
    assert git(repo, "status", "--porcelain") == ""
    missing = cli("init", str(repo), "--runner", "slurm", env={"AUTORESEARCH_SLURM__SHARED_DIR": str(tmp_path / "x")})
    assert missing.returncode == 2 and "is not an existing folder" in missing.stderr
    assert not (repo / ".git" / "autoresearch").exists()


def test_the_readme_example_config_is_valid(tmp_path: Path) -> None:
    """The README's "On a Slurm cluster" autoresearch.toml loads as it is (no drift from the settings)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## On a Slurm cluster", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "autoresearch.toml").write_text(example)
    s = load_settings(tmp_path)
    assert (s.runner, s.lanes, str(s.slurm.shared_dir)) == ("slurm", 4, "/shared/autoresearch/myrepo")
    assert resource_args(s.slurm) == ["--partition=gpu", "--account=mylab", "--gres=gpu:1", "--cpus-per-task=8",
                                      "--mem=64G", "--constraint=a100"]


@pytest.mark.slurm
def test_ci_setup_is_idempotent_and_exports_the_requirement(slurm_cluster: None) -> None:
    """A second `start` finds the cluster answering and changes nothing; sourced, it sets the CI variable."""
    setup = Path(__file__).resolve().parents[2] / ".ci" / "slurm-setup.sh"
    script = f"set -euo pipefail; source {setup} start; echo REQUIRE=$AUTORESEARCH_REQUIRE_SLURM"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "AUTORESEARCH_REQUIRE_SLURM": ""})
    assert done.returncode == 0, done.stderr
    assert "slurm-setup: a cluster already answers" in done.stdout and "REQUIRE=1" in done.stdout
    bad = subprocess.run(["bash", str(setup), "restart"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "usage: slurm-setup.sh start|stop|status" in bad.stderr

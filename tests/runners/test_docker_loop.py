"""The daemon with the Docker runner, end to end through the CLI: real training, init's default,
and kill -9 recovery with containers."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from autoresearch.cli.commands import repo_id
from autoresearch.journal.ledger import parse_results
from tests.conftest import cli, git, make_repo
from tests.coordinator.test_kill import assert_recovery_exercised, check_consistency, kill_and_restart, kill_test_repo

pytestmark = pytest.mark.docker


def _containers(client: Any, repo: Path) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"autoresearch.repo={repo_id(repo)}"}))


@pytest.mark.slow
def test_example_runs_in_containers(docker_client: Any, tmp_path: Path) -> None:
    repo = (tmp_path / "example").resolve()
    assert cli("example", str(repo)).returncode == 0
    docker = {"AUTORESEARCH_RUNNER": "docker",  # the example's toml says process; the environment overrides it
              "AUTORESEARCH_BUDGET": "4"}  # a measured key: pinned by init
    init = cli("init", str(repo), "--tag", "d", env=docker, timeout=900)
    assert init.returncode == 0, init.stderr[-3000:]
    # A generous grace: on a loaded 2-core machine startup and evaluation take several seconds.
    result = cli("run", str(repo), "--max-experiments", "3", "--budget", "4", "--grace", "60", env=docker, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = parse_results((repo / "results.tsv").read_text())
    assert len(rows) == 3
    assert rows[0]["status"] == "keep" and float(rows[0]["val_bpb"]) > 0
    assert float(rows[0]["memory_gb"]) > 0  # the container's peak memory, measured from its cgroup
    assert _containers(docker_client, repo) == []


def test_init_defaults_to_docker_when_an_engine_and_image_are_there(docker_client: Any, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    result = cli("init", str(repo), "--tag", "auto", "--budget", "2", env={"COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    config = git(repo, "show", "autoresearch/auto:autoresearch.toml")  # on the session branch, not the checkout
    assert 'runner = "docker"' in config
    where = os.environ.get("DOCKER_HOST") or "the default socket"  # init says which runner, and why
    assert f"runner: docker (engine up at {where}, image autoresearch-runner:local present;" in result.stdout


@pytest.mark.slow
def test_kill_nine_with_the_docker_runner(docker_client: Any, tmp_path: Path) -> None:
    repo = kill_test_repo(tmp_path, "docker")
    kill_and_restart(repo, seed=11)
    time.sleep(0.5)
    assert _containers(docker_client, repo) == []
    check_consistency(repo, "k")
    assert_recovery_exercised(repo)

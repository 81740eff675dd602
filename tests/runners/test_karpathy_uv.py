"""The karpathy-like uv fixture end to end, as its users run it: ``uv sync`` as setup, ``uv run
prepare.py``, ``uv run train.py``, six experiments with the offline agent, under bubblewrap and under
Docker. The dependency (termcolor) is only in the repo's environment; the data and the hub cache live in
the session's home; every run writes a compile cache under ~ that must vanish with it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from autoresearch.journal.store import Journal
from tests.conftest import cli, git
from tests.karpathy_analysis import check_session as notebook_check
from tests.karpathy_fixture import DEPENDENCY, karpathy_session

pytestmark = pytest.mark.slow


def check_session(repo: Path, runner: str) -> None:
    assert importlib.util.find_spec(DEPENDENCY) is None, "the fixture's dependency must not be the daemon's"
    state = repo / ".git" / "autoresearch"
    journal = Journal(state / "journal.jsonl").load()
    runs = [e for e in journal.completed() if not e.measure_commit]
    assert len(journal.completed()) >= 6 and len(runs) >= 2
    assert [e.cause for e in journal.completed()] == ["ok"] * len(journal.completed())
    assert len({e.commit for e in runs}) >= 2, "the offline agent's changes ran"
    for exp in journal.completed():
        log = (state / "runs" / str(exp.n) / "run.log").read_text()
        assert "compile cache fresh: True; home data read-only" in log, log
    assert [(s.n, s.trigger, s.cause) for s in journal.setups] == [(None, ["missing environment"], "ok")]
    home = state / "home"
    assert json.loads((home / ".cache" / "kfix" / "shard_00000.json").read_text()) == {"scale": 1.0}
    assert (home / ".cache" / "huggingface" / "hub" / "models--kfix--kernels" / "kernel.txt").is_file()
    assert not (home / ".cache" / "kfix-compile").exists(), "a run's compile cache outlived it"
    assert not list(state.rglob(".home-*")), "a per-run home layer was left behind"
    venv = state / "env" / "pyvenv.cfg"
    built_for = json.loads((state / "setup.json").read_text())["runner"]
    assert built_for.startswith("docker:") if runner == "docker" else built_for == "process"
    if runner == "docker":  # built inside the image, as the container's user
        assert venv.stat().st_uid == 65534
    assert "home = " in venv.read_text()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    # karpathy's analysis.ipynb logic on this session's results.tsv: KEEP rows = distinct kept commits,
    # the deltas are the judged means' differences.
    notebook_check(repo)


def test_six_experiments_under_bwrap(tmp_path: Path) -> None:
    repo = karpathy_session(tmp_path / "autoresearch", "process")
    check_session(repo, "process")
    # A changed setup command rebuilds the environment before the next experiment, journaled with why.
    again = cli("run", str(repo), "--max-experiments", "7", env={"AUTORESEARCH_SETUP": "uv sync --frozen"},
                timeout=600)
    assert again.returncode == 0, again.stderr
    journal = Journal(repo / ".git" / "autoresearch" / "journal.jsonl").load()
    before = {e.n for e in journal.completed()[:6]}
    assert [(s.trigger, s.cause) for s in journal.setups[1:]] == [(["command"], "ok")]
    assert journal.setups[1].n not in before  # before the first experiment of the second run
    assert [e.cause for e in journal.completed()] == ["ok"] * len(journal.completed())
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""


@pytest.mark.docker
def test_six_experiments_under_docker(tmp_path: Path, docker_client: Any) -> None:
    check_session(karpathy_session(tmp_path / "autoresearch", "docker"), "docker")

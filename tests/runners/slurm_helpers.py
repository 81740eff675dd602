"""A Slurm runner and a train run's spec on a real git repo, for the Slurm runner's tests (fake and real)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autoresearch.ops.config import load_settings
from autoresearch.runners.base import RunSpec
from autoresearch.runners.process import ProcessRunner
from autoresearch.runners.slurm import SlurmRunner
from autoresearch.runners.slurm_cli import Slurm
from tests.conftest import make_repo


def runner(tmp_path: Path, slurm: Slurm, repo_id: str = "rid", docker: dict[str, Any] | None = None,
           **settings: Any) -> SlurmRunner:
    values = {"shared_dir": tmp_path / "shared", "poll_s": 0.02, "gres": "gpu:1", **settings}
    config = load_settings(tmp_path, runner="slurm", slurm=values, **({"docker": docker} if docker else {}))
    return SlurmRunner(settings=config, local=ProcessRunner.from_config(config), slurm=slurm, repo_id=repo_id,
                       instance="me")


def spec(tmp_path: Path, budget: float = 0.3, grace: float = 0.2, command: str = "python3 train.py",
         train: str = "print('hi')\n", **kw: Any) -> RunSpec:
    """Run 7 of a repo under ``tmp_path``, from a snapshot holding ``train`` as train.py."""
    repo = tmp_path / "repo"
    if not repo.exists():
        make_repo(repo)
    snap = tmp_path / "snap"
    snap.mkdir(exist_ok=True)
    (snap / "train.py").write_text(train)
    state = repo / ".git" / "autoresearch"
    return RunSpec(n=7, kind="train", command=command, workdir=repo, budget=budget, grace=grace, env={},
                   log_path=state / "runs" / "7" / "run.log", log_cap_bytes=100_000, target="train.py",
                   snapshot=snap, output_dir=state / "runs" / "7" / "output",
                   stdout_path=state / "runs" / "7" / "stdout.log", **kw)


def collect() -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], None]]:
    """The handles a run journals, in order, and the ``on_started`` that records them."""
    handles: list[dict[str, Any]] = []
    return handles, lambda h: handles.append(dict(h))

"""Shared fixtures: small real git research repos with a fast, dependency-free training script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# A training script that takes ~0.1 s: its metric is a known function of its constants.
FAST_TRAIN = """\
import os
import time

LR = 0.5
WIDTH = 8
SLEEP = 0.05

budget = float(os.environ["AUTORESEARCH_TIME_BUDGET"])
time.sleep(SLEEP)
print("step 1/1")
print("---")
print("val_bpb:          %.6f" % ((LR - 0.1) ** 2 + abs(WIDTH - 12) * 0.01 + 1.0))
print("peak_vram_mb:     512.0")
"""

PREPARE = """\
import os
from pathlib import Path
cache = Path(os.environ["AUTORESEARCH_CACHE"])
cache.mkdir(parents=True, exist_ok=True)
(cache / "data.txt").write_text("prepared")
print("prepared; metric is val_bpb")
"""

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


NO_REPEATS = {"AUTORESEARCH_NOISE__REPEATS": "0"}

NO_CGROUPS = {"AUTORESEARCH_PROCESS__CGROUPS": "off"}
"""Never a per-run cgroup on the test host: its cgroups belong to the machine's supervisor (the limits tests
make them in a container with its own cgroup namespace, tests/runners/test_limits_cgroups.py). Set for the
whole session below; a test that starts the daemon with AUTORESEARCH_* stripped must add it back."""
os.environ.update({k: os.environ.get(k, v) for k, v in NO_CGROUPS.items()})


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def make_repo(path: Path, train: str = FAST_TRAIN, extra: dict[str, str] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    (path / "train.py").write_text(train)
    (path / "prepare.py").write_text(PREPARE)
    for name, text in (extra or {}).items():
        (path / name).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "research repo")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "research")


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess (exit codes and messages as a user sees them).

    No baseline repeats unless a test asks (AUTORESEARCH_NOISE__REPEATS): one row per proposal."""
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV, **NO_REPEATS, **(env or {})}, timeout=timeout)


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return cli


@pytest.fixture
def initialised(repo: Path) -> Path:
    result = cli("init", str(repo), "--tag", "t1", "--runner", "process", "--readonly", "prepare.py",
                 "--prepare", "python3 prepare.py",
                 "--budget", "2")
    assert result.returncode == 0, result.stderr
    return repo


@pytest.fixture(autouse=True)
def _environ_restored() -> Iterator[None]:
    """The demo run in-process sets AUTORESEARCH_* for its own process (a sandbox fallback, the pinned
    budget): what a test leaves in os.environ must not decide the tests after it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
from tests.slurm_cluster import slurm_cluster  # noqa: E402,F401  (the Slurm tests' fixture)

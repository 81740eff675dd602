"""Issue 16's scenarios through the real command line: commits on the session branch are never lost and
config changes take effect on the next run; an edit during a run survives; a measured key needs a new
session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GIT_ENV, NO_REPEATS, cli, git, make_repo

CFG_TRAIN = """\
import os
import random

LR = 0.5
WIDTH = 8

random.seed(int(os.environ.get("AUTORESEARCH_SEED", "0")))
print("loss: %.6f" % ((LR - 0.1) ** 2 + abs(WIDTH - 12) * 0.01 + 1.0 + random.random() * 0.001))
"""


def _cfg(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "cfg", train=CFG_TRAIN).resolve()


def _sh(script: str, cwd: Path) -> None:
    subprocess.run(["bash", "-euc", script], cwd=cwd, check=True, env=_env())


def _rows(repo: Path) -> list[str]:
    return (repo / "results.tsv").read_text().splitlines()[1:]


@pytest.mark.slow
def test_issue_commit_scenario_keeps_l7_and_honours_it(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    # The issue's commands, with --runner/--tag pinned for the test. init no longer switches the checkout,
    # so a user who commits on the session branch checks it out first.
    init = cli("init", "cfg", "--target", "train.py", "--readonly", "prepare.py", "--prepare", "python3 prepare.py",
               "--run", "python3 train.py", "--metric", "loss", "--direction", "min", "--budget", "1",
               "--runner", "process", "--tag", "cfg", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert git(cfg, "symbolic-ref", "--short", "HEAD") == "main"
    _sh("git -C cfg checkout -q autoresearch/cfg\n"
        "printf '\\n[limits]\\nmax_experiments = 4\\n' >> cfg/autoresearch.toml; git -C cfg commit -qam l4", tmp_path)
    l4 = git(cfg, "rev-parse", "HEAD")
    first = cli("run", "cfg", cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr
    assert len(_rows(cfg)) == 4 and "max_experiments reached (4)" in first.stdout + first.stderr
    assert f"adopted {l4[:7]}" in _rows(cfg)[0]  # the user's commit was measured as the base
    _sh("sed -i 's/= 4/= 7/' cfg/autoresearch.toml; git -C cfg commit -qam l7", tmp_path)
    l7 = git(cfg, "rev-parse", "HEAD")
    assert cli("run", "cfg", cwd=tmp_path, timeout=300).returncode == 0
    third = cli("run", "cfg", cwd=tmp_path, timeout=300)
    assert third.returncode == 0 and "max_experiments reached (7)" in third.stdout + third.stderr
    assert len(_rows(cfg)) == 7
    for commit in (l4, l7):  # both still on the branch the daemon owns
        assert git(cfg, "merge-base", "--is-ancestor", commit, "autoresearch/cfg") == ""
    assert "max_experiments = 7" in git(cfg, "show", "autoresearch/cfg:autoresearch.toml")
    assert git(cfg, "rev-parse", "HEAD") == git(cfg, "rev-parse", "autoresearch/cfg")  # clean: it followed
    assert git(cfg, "status", "--porcelain") == ""
    status = json.loads(cli("status", "cfg", "--json", cwd=tmp_path).stdout)
    assert status["branch"]["state"] == "ok" and status["branch"]["tip"] == status["best_commit"]


@pytest.mark.slow
def test_an_edit_during_a_daemon_run_survives(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    assert cli("init", str(cfg), "--metric", "loss", "--budget", "3", "--runner", "process", "--tag", "e",
               "--run", "python3 -c 'import time; time.sleep(1.5); exec(open(\"train.py\").read())'").returncode == 0
    daemon = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(cfg), "--max-experiments", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**_env(), **NO_REPEATS})
    try:
        log = cfg / ".git/autoresearch/runs/0/run.log"
        deadline = time.monotonic() + 60
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _sh("echo '# edit' >> train.py", cfg)  # while the baseline trains
        assert daemon.wait(timeout=120) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert (cfg / "train.py").read_text() == CFG_TRAIN + "# edit\n"
    assert git(cfg, "status", "--porcelain", "--untracked-files=no") == "M train.py"
    assert len(_rows(cfg)) == 2 and git(cfg, "symbolic-ref", "--short", "HEAD") == "main"


def _env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV}


def test_run_with_a_changed_measured_key_exits_2(initialised: Path) -> None:
    before = git(initialised, "show-ref")
    changed = cli("run", str(initialised), "--budget", "3")
    assert changed.returncode == 2, changed.stderr
    assert "budget changed since session t1 began" in changed.stderr and "--tag NEW" in changed.stderr
    assert "now 3.0 (from flag --budget)" in changed.stderr
    assert git(initialised, "show-ref") == before and git(initialised, "status", "--porcelain") == ""
    git(initialised, "checkout", "-q", "autoresearch/t1")  # a committed change of the metric: the same
    toml = initialised / "autoresearch.toml"
    toml.write_text(toml.read_text() + 'metric = "loss"\n')
    git(initialised, "commit", "-qam", "other metric")
    committed = cli("run", str(initialised))
    assert committed.returncode == 2 and "metric changed since session t1 began" in committed.stderr
    assert "(from key metric in autoresearch/t1:autoresearch.toml)" in committed.stderr

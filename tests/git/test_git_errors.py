"""Runtime git failures are retryable (issue 17, finding 4): a lock another git holds and a git that hangs
are retried, then exit 1 (systemd restarts); only pre-flight problems are ``RepoError`` (exit 2).

Against real repositories, a real lock file and a fake git on PATH that hangs."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from autoresearch.errors import GitBusy, GitRefused, GitTimeout, RepoError
from autoresearch.git.run import GitPolicy
from autoresearch.git.workspace import GitWorkspace
from tests.conftest import cli, git

FAST = GitPolicy(timeout_s=1.0, attempts=3, initial_s=0.05, max_wait_s=0.2)


def hanging_git(folder: Path, verb: str, pids: Path) -> Path:
    """A ``git`` that records its pid and sleeps (in a child, as a hook would) on ``verb``; else the real git."""
    real = next(Path(p) / "git" for p in os.environ["PATH"].split(os.pathsep) if (Path(p) / "git").is_file())
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "git"
    script.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do if [ "$a" = "{verb}" ]; then\n'
        f"  sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; wait\n"
        "fi; done\n"
        f'exec {real} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_held_index_lock_is_busy_and_retried(repo: Path) -> None:
    ws = GitWorkspace.open(repo)
    ws.policy = FAST
    head = ws.head()
    lock = repo / ".git" / "index.lock"
    lock.write_text("")  # the user's IDE in the middle of `git status`
    with pytest.raises(GitBusy, match=r"index\.lock"):
        ws.reset_hard(head)
    assert not isinstance(GitBusy("x"), RepoError) and GitBusy("x").exit_code == 1

    ws.policy = GitPolicy(timeout_s=5.0, attempts=8, initial_s=0.1, max_wait_s=0.3)
    threading.Timer(0.4, lock.unlink).start()  # the IDE finishes: the retried command goes through
    ws.reset_hard(head)


def test_held_ref_lock_is_not_a_lost_race(repo: Path) -> None:
    """A compare-and-swap that met another git's ref lock is retried, then raised: not read as
    "someone moved the branch" (which it would wrongly report as behind)."""
    ws = GitWorkspace.open(repo)
    ws.policy = FAST
    head = ws.head()
    git(repo, "branch", "side")
    (repo / ".git" / "refs" / "heads" / "side.lock").write_text("")
    with pytest.raises(GitBusy):
        ws.move_branch("side", head, head)
    (repo / ".git" / "refs" / "heads" / "side.lock").unlink()
    assert ws.move_branch("side", head, "0" * 40) is False  # a real lost race is an answer
    with pytest.raises(GitRefused):
        ws.set_ref("refs/heads/x", "not-a-sha")


def test_hanging_git_is_killed_with_its_children(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pids = tmp_path / "pids"
    monkeypatch.setenv("PATH", f"{hanging_git(tmp_path / 'bin', 'update-ref', pids)}{os.pathsep}{os.environ['PATH']}")
    ws = GitWorkspace.open(repo)
    ws.policy = GitPolicy(timeout_s=0.5, attempts=2, initial_s=0.05, max_wait_s=0.1)
    t0 = time.monotonic()
    with pytest.raises(GitTimeout, match=r"did not finish within 0\.5 s"):
        ws.set_ref("refs/heads/y", ws.head())
    assert time.monotonic() - t0 < 10
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 4  # two attempts, each a git and its sleeping child
    time.sleep(0.2)
    alive = [p for p in started if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
    assert alive == [], "a timed-out git's process group must be killed"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_preflight_problems_stay_repo_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RepoError):
        GitWorkspace.open(plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(RepoError, match="no commits"):
        GitWorkspace.open(empty).head()
    done = cli("run", str(plain))  # what the user must fix: exit 2, no restart
    assert done.returncode == 2 and "is not a git repository" in done.stderr


def _run(repo: Path, extra: dict[str, str] | None = None) -> tuple[int, str, float]:
    t0 = time.monotonic()
    env = {"AUTORESEARCH_GIT__ATTEMPTS": "2", "AUTORESEARCH_GIT__TIMEOUT_S": "2", **(extra or {})}
    done = cli("run", str(repo), "--max-experiments", "2", env=env, timeout=120)
    return done.returncode, done.stderr, time.monotonic() - t0


def test_cli_exits_1_on_a_lock_that_stays_held(initialised: Path) -> None:
    """The experiment ref's lock held by someone else: exit 1 (systemd restarts), never 2."""
    refs = initialised / ".git" / "refs" / "autoresearch" / "t1"
    refs.mkdir(parents=True, exist_ok=True)
    for n in range(3):
        (refs / f"{n}.lock").write_text("")
    code, stderr, _ = _run(initialised)
    assert code == 1, stderr
    assert "another git process holds the lock" in stderr
    for n in range(3):
        (refs / f"{n}.lock").unlink()
    code, stderr, _ = _run(initialised)  # the lock is gone: the restarted daemon goes on
    assert code == 0, stderr


def test_cli_exits_1_on_a_hanging_git(initialised: Path, tmp_path: Path) -> None:
    fake = hanging_git(tmp_path / "bin", "update-ref", tmp_path / "pids")
    code, stderr, took = _run(initialised, {"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    assert code == 1, stderr
    assert "did not finish within 2 s" in stderr
    assert took < 90

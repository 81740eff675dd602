"""What keeping the session branch costs per step: ``branchsync.sync`` (after each row, at start, and between
experiments) and ``branchsync.inspect`` (``status``), on a fresh repo.

    python3 bench/branchsync.py [--repeats 20] [--smoke]

Printed, in milliseconds per call (median and max): sync with the branch already at the best, with the
branch not checked out and one keep to move (compare-and-swap), with a clean checkout of the branch to
fast-forward (``merge --ff-only``), and inspect with a dirty checkout left behind; the last line, the
medians, is for scripts (``branchsync_ms: at_best=… move=… fast_forward=… inspect=…``). ``--smoke``: 2
repeats (CI).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from autoresearch.git import branchsync
from autoresearch.git.workspace import GitWorkspace
from autoresearch.journal.store import Journal, JournalState
from autoresearch.ops.config import Settings
from autoresearch.sessions.session import start_session

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@localhost", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@localhost"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=ENV, check=True, capture_output=True, text=True).stdout.strip()


def repo_with_session(root: Path) -> tuple[GitWorkspace, JournalState]:
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("LR = 0.5\nprint('val_bpb: 1.0')\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "repo")
    ws = GitWorkspace.open(root)
    start_session(ws, Settings(budget=1.0), "b", "budget = 1\n")
    return ws, Journal(ws.state_dir() / "journal.jsonl").load()


def keep_to(ws: GitWorkspace, state: JournalState, i: int) -> JournalState:
    """A state whose want is a new commit on the branch's tip (as a keep leaves it)."""
    tip = ws.branch_sha("autoresearch/b")
    assert tip is not None
    new = ws.make_commit(tip, "train.py", f"LR = {i}\nprint('val_bpb: 1.0')\n", f"k{i}", "2026-01-01T00:00:00Z")
    assert state.session is not None
    return JournalState(session=state.session.model_copy(update={"base": new}))


def timed(repeats: int, setup: Callable[[int], JournalState], call: Callable[[JournalState], object]) -> list[float]:
    times = []
    for i in range(repeats):
        state = setup(i)
        start = time.perf_counter()
        call(state)
        times.append((time.perf_counter() - start) * 1000)
    return times


def show(label: str, times: list[float]) -> float:
    print(f"{label:32}median {statistics.median(times):6.1f} ms  max {max(times):6.1f} ms")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="2 repeats: the code paths, in seconds (CI)")
    args = parser.parse_args()
    repeats = 2 if args.smoke else args.repeats
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))  # figures only
    medians = {}
    with tempfile.TemporaryDirectory() as tmp:
        ws, state = repo_with_session(Path(tmp) / "r")
        branch = "autoresearch/b"
        sync = lambda s: branchsync.sync(ws, branch, s)  # noqa: E731
        medians["at_best"] = show("sync, branch at the best:", timed(repeats, lambda _i: state, sync))
        medians["move"] = show("sync, one keep to move:", timed(repeats, lambda i: keep_to(ws, state, i), sync))
        git(ws.root, "checkout", "-q", branch)
        medians["fast_forward"] = show("sync, fast-forward a checkout:",
                                       timed(repeats, lambda i: keep_to(ws, state, 100 + i), sync))
        (ws.root / "train.py").write_text("# dirty\n")
        inspect = lambda s: branchsync.inspect(ws, branch, s)  # noqa: E731
        medians["inspect"] = show("inspect, dirty checkout behind:",
                                  timed(repeats, lambda i: keep_to(ws, state, 200 + i), inspect))
    print("branchsync_ms: " + " ".join(f"{k}={v:.1f}" for k, v in medians.items()))


if __name__ == "__main__":
    main()

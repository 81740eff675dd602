"""Scratch checkouts for external agents, and running a command in its own process group.

A scratch checkout is a detached ``git worktree`` of the best commit under
``.git/autoresearch/scratch/<n>/tree``: a real git checkout (coding-agent CLIs expect one) that never
touches the research branch or the working tree. It is removed afterwards, and any leftover from a
crash is removed before the next one is made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autoresearch.errors import AgentError, RepoError
from autoresearch.gitcmd import run_git


def _git(repo: Path, *args: str) -> str:
    try:
        return run_git(repo, *args)
    except RepoError as exc:
        raise AgentError(f"{exc} (the command agent's scratch checkout)") from exc


def scratch_root(repo: Path) -> Path:
    common = Path(_git(repo, "rev-parse", "--git-common-dir").strip())
    return (common if common.is_absolute() else repo / common).resolve() / "autoresearch" / "scratch"


@contextmanager
def scratch_checkout(repo: Path, commit: str, name: str) -> Iterator[tuple[Path, Path]]:
    """Yield (tree, work): the detached checkout of ``commit`` and a private folder beside it."""
    work = scratch_root(repo) / name
    tree = work / "tree"
    _remove(repo, work, tree)
    work.mkdir(parents=True)
    _git(repo, "worktree", "add", "--detach", "--force", str(tree), commit)
    try:
        yield tree, work
    finally:
        _remove(repo, work, tree)


def _remove(repo: Path, work: Path, tree: Path) -> None:
    if tree.exists():
        with contextlib.suppress(RepoError):
            run_git(repo, "worktree", "remove", "--force", "--force", str(tree))
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(RepoError):
        run_git(repo, "worktree", "prune")


def changed_paths(tree: Path) -> list[str]:
    """Paths changed, added or deleted in the checkout (untracked files included, ignored ones not)."""
    out = _git(tree, f"--work-tree={tree}", "status", "--porcelain=v1", "-z", "--untracked-files=all",
               "--no-renames", "--ignore-submodules=all")
    return sorted(entry[3:] for entry in out.split("\0") if len(entry) > 3)


def run_in_group(
    command: str, cwd: Path, env: dict[str, str], timeout_s: float, grace_s: float, log_path: Path
) -> int | None:
    """Run ``command`` under /bin/sh in a new session; output goes to ``log_path``.

    Returns the exit status, or None when it timed out. The whole process group is killed at the end
    either way, so no stray child keeps editing the checkout (or running) after we move on.
    """
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
            return None
        finally:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone

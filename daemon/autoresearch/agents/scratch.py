"""Scratch checkouts for external agents, and running the agent's command (sandboxed or not).

A scratch checkout is the best commit's files (``git archive``: nothing untracked, no link to the
repo's .git) under ``.git/autoresearch/scratch/<n>/tree``, made a fresh one-commit git repo so that
coding-agent CLIs find the repository they expect. The daemon never runs git in it after the agent
ran (its config and attributes are the agent's to plant); changes are found by comparing file hashes
with the manifest taken before, and files are read without following links out of the tree. It is
removed afterwards, and any leftover from a crash is removed before the next one is made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from autoresearch.errors import AgentError, GitFailed, ProposalRejected, RepoError
from autoresearch.git.cmd import run_git
from autoresearch.runners.hashing import MAX_HASH_BYTES, NotRegularFile, file_hash, open_regular

MAX_READ_BYTES = MAX_HASH_BYTES
"""Largest file taken back from the scratch checkout (the target, the notes, the description)."""
_IDENTITY = {"GIT_AUTHOR_NAME": "autoresearch", "GIT_AUTHOR_EMAIL": "autoresearch@localhost",
             "GIT_COMMITTER_NAME": "autoresearch", "GIT_COMMITTER_EMAIL": "autoresearch@localhost"}


def _git(repo: Path, *args: str) -> str:
    try:
        return run_git(repo, *args, env=_IDENTITY)
    except (RepoError, GitFailed) as exc:
        raise AgentError(f"{exc} (the command agent's scratch checkout)") from exc


def scratch_root(repo: Path) -> Path:
    common = Path(_git(repo, "rev-parse", "--git-common-dir").strip())
    return (common if common.is_absolute() else repo / common).resolve() / "autoresearch" / "scratch"


@contextmanager
def scratch_checkout(repo: Path, commit: str, name: str) -> Iterator[tuple[Path, Path]]:
    """Yield (tree, work): ``commit``'s files in a fresh one-commit repo, and a private folder beside it."""
    work = scratch_root(repo) / name
    tree = work / "tree"
    _remove(repo, work)
    work.mkdir(parents=True)
    try:
        _export(repo, commit, tree)
        _git(tree, "init", "-q", "--template=", "-b", "main")
        _git(tree, "add", "-A")
        _git(tree, "commit", "-q", "--no-verify", "--allow-empty", "-m", f"autoresearch scratch of {commit[:12]}")
        yield tree, work
    finally:
        _remove(repo, work)


def _export(repo: Path, commit: str, dest: Path) -> None:
    """``git archive`` of the commit (the workspace's export: tarfile's ``data`` filter, nothing untracked)."""
    from autoresearch.git.workspace import GitWorkspace

    try:
        GitWorkspace.open(repo).export(commit, dest)
    except (RepoError, GitFailed) as exc:
        raise AgentError(f"{exc} (the command agent's scratch checkout)") from exc


def _remove(repo: Path, work: Path) -> None:
    _rmtree(work)
    # Scratch checkouts of older versions were git worktrees: drop their registrations.
    with contextlib.suppress(RepoError, GitFailed):
        run_git(repo, "worktree", "prune")


def _rmtree(path: Path) -> None:
    """Remove a tree the agent wrote, also where it took away its own permissions (its files are ours)."""
    for dirpath, dirs, _names in os.walk(path):
        for d in dirs:
            with contextlib.suppress(OSError):
                if not (Path(dirpath) / d).is_symlink():
                    (Path(dirpath) / d).chmod(0o700)  # before os.walk lists it
    shutil.rmtree(path, ignore_errors=True)


def manifest(tree: Path) -> dict[str, str | None]:
    """Relative path -> sha256 of every file in the tree (links by their target text), its .git left out."""
    out: dict[str, str | None] = {}
    for dirpath, dirs, names in os.walk(tree):
        here = Path(dirpath)
        if here == tree:
            dirs[:] = [d for d in dirs if d != ".git"]
            names = [n for n in names if n != ".git"]
        for name in names + [d for d in dirs if (here / d).is_symlink()]:
            path = here / name
            rel = str(path.relative_to(tree))
            out[rel] = file_hash(path)  # links, FIFOs and huge files get a marker, unread
    return out


def changed_paths(before: dict[str, str | None], tree: Path) -> list[str]:
    """Paths changed, added or deleted in the tree since ``before`` (its manifest)."""
    after = manifest(tree)
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def read_inside(tree: Path, rel: str) -> str | None:
    """A regular file of the tree as text, never through a link (the agent may plant one to a host file)
    and never blocking (a FIFO); None if missing. ProposalRejected if it is not a regular file or too big."""
    path = tree / rel
    try:
        with open_regular(path) as (fh, st):
            if path.parent.resolve() != tree.resolve() / Path(rel).parent:
                raise ProposalRejected(f"{rel} in the agent's checkout is not a regular file of the checkout")
            if st.st_size > MAX_READ_BYTES:
                raise ProposalRejected(f"{rel} in the agent's checkout is over {MAX_READ_BYTES} bytes")
            return fh.read(MAX_READ_BYTES).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except NotRegularFile as exc:
        raise ProposalRejected(f"{rel} in the agent's checkout is not a regular file of the checkout: {exc}") from exc
    except OSError as exc:
        raise ProposalRejected(f"{rel} in the agent's checkout cannot be read safely: {exc}") from exc

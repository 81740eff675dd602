"""The git workspace: the research repo's working tree and the refs the loop moves.

Every move is a plain ref update or a hard reset, so each is safe to repeat after a crash, and
commits are deterministic (fixed identity, dates from the journal) so re-committing a proposal gives
the same sha.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from autoresearch import tarsafe
from autoresearch.errors import RepoError

IDENTITY = ("autoresearch", "autoresearch@localhost")


class Workspace(Protocol):
    root: Path

    def head(self) -> str: ...
    def current_branch(self) -> str | None: ...
    def dirty_files(self) -> list[str]: ...
    def branch_sha(self, branch: str) -> str | None: ...
    def create_branch(self, branch: str) -> str: ...
    def checkout(self, branch: str) -> None: ...
    def read(self, commit: str, path: str) -> str: ...
    def commit_file(self, parent: str, path: str, content: str, message: str, when: str) -> str: ...
    def set_ref(self, ref: str, sha: str) -> None: ...
    def reset_hard(self, sha: str) -> None: ...
    def changed_paths(self, a: str, b: str) -> list[str]: ...
    def export(self, commit: str, dest: Path) -> None:
        """Write the files committed at ``commit`` (and nothing else) into the new folder ``dest``."""
    def exclude(self, pattern: str) -> bool:
        """Add a pattern to info/exclude unless there; True if it was added."""
    def state_dir(self) -> Path: ...
    def close(self) -> None: ...


class GitWorkspace:
    """The real workspace, through GitPython's git command wrapper."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._repo: object | None = None

    @classmethod
    def open(cls, path: Path) -> GitWorkspace:
        import git  # gitpython; imported here so nothing happens at import time

        try:
            repo = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise RepoError(f"{path} is not a git repository (run `git init` there, or pick the repo)") from exc
        if repo.bare or repo.working_tree_dir is None:
            raise RepoError(f"{path} is a bare repository; autoresearch needs a working tree")
        ws = cls(Path(repo.working_tree_dir).resolve())
        ws._repo = repo
        return ws

    def _git(self, *args: str, env: dict[str, str] | None = None) -> str:
        import git

        repo = self._repo
        assert isinstance(repo, git.Repo)
        try:
            out: str = repo.git.execute(
                ["git", "-c", "commit.gpgsign=false", *args],
                env=env,
                strip_newline_in_stdout=True,
            )
        except git.GitCommandError as exc:
            stderr = (exc.stderr or "").strip()
            raise RepoError(f"git {' '.join(args)} failed in {self.root}: {stderr}") from exc
        return out

    def head(self) -> str:
        try:
            return self._git("rev-parse", "--verify", "HEAD^{commit}")
        except RepoError as exc:
            raise RepoError(f"{self.root} has no commits yet; commit the target first") from exc

    def current_branch(self) -> str | None:
        try:
            return self._git("symbolic-ref", "--short", "-q", "HEAD") or None
        except RepoError:
            return None  # detached HEAD

    def dirty_files(self) -> list[str]:
        out = self._git("status", "--porcelain", "--untracked-files=no")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def branch_sha(self, branch: str) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "-q", f"refs/heads/{branch}") or None
        except RepoError:
            return None

    def create_branch(self, branch: str) -> str:
        self._git("checkout", "-q", "-b", branch)
        return self.head()

    def checkout(self, branch: str) -> None:
        self._git("checkout", "-q", branch)

    def read(self, commit: str, path: str) -> str:
        import git

        repo = self._repo
        assert isinstance(repo, git.Repo)
        try:
            blob = repo.commit(commit).tree / path
            data: bytes = blob.data_stream.read()
        except (KeyError, ValueError, git.BadName) as exc:
            raise RepoError(f"{path} does not exist at commit {commit[:7]}") from exc
        return data.decode("utf-8")

    def commit_file(self, parent: str, path: str, content: str, message: str, when: str) -> str:
        """Commit ``content`` as ``path`` on top of ``parent``, move the checked-out branch there."""
        self.reset_hard(parent)
        (self.root / path).write_text(content, encoding="utf-8")
        self._git("add", "--", path)
        tree = self._git("write-tree")
        name, email = IDENTITY
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
        }
        sha = self._git("commit-tree", tree, "-p", parent, "-m", message, env=env)
        self._git("update-ref", "HEAD", sha)
        return sha

    def set_ref(self, ref: str, sha: str) -> None:
        self._git("update-ref", ref, sha)

    def reset_hard(self, sha: str) -> None:
        self._git("reset", "-q", "--hard", sha)

    def changed_paths(self, a: str, b: str) -> list[str]:
        return self._git("diff", "--name-only", a, b).splitlines()

    def export(self, commit: str, dest: Path) -> None:
        """``git archive`` of the commit, unpacked with tarfile's ``data`` filter (no links out, no devices)."""
        dest.mkdir(parents=True)
        with tempfile.TemporaryFile() as tar:
            self._archive(commit, tar)
            tar.seek(0)
            try:
                with tarfile.open(fileobj=tar) as archive:
                    tarsafe.extract(archive, dest)  # the data filter, also on Python < 3.11.4
            except tarfile.TarError as exc:  # e.g. a committed symlink that points out of the repo
                raise RepoError(f"commit {commit[:7]} cannot be unpacked for a run: {exc}") from exc

    def _archive(self, commit: str, out: IO[bytes]) -> None:
        import git

        repo = self._repo
        assert isinstance(repo, git.Repo)
        try:
            repo.git.execute(["git", "archive", "--format=tar", commit], output_stream=out)
        except git.GitCommandError as exc:
            raise RepoError(f"git archive {commit[:7]} failed in {self.root}: {(exc.stderr or '').strip()}") from exc

    def exclude(self, pattern: str) -> bool:
        path = Path(self._git("rev-parse", "--git-path", "info/exclude"))
        path = path if path.is_absolute() else self.root / path
        text = path.read_text() if path.exists() else ""
        if pattern in text.splitlines():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write(("\n" if text and not text.endswith("\n") else "") + pattern + "\n")
        return True

    def close(self) -> None:
        """End GitPython's persistent cat-file helpers (they would outlive the daemon)."""
        import git

        if isinstance(self._repo, git.Repo):
            self._repo.close()

    def state_dir(self) -> Path:
        git_dir = Path(self._git("rev-parse", "--git-common-dir"))
        git_dir = git_dir if git_dir.is_absolute() else self.root / git_dir
        return git_dir / "autoresearch"


@dataclass
class FakeWorkspace:
    """An in-memory workspace for loop tests: commits are dicts of path -> content."""

    root: Path
    files: dict[str, str] = field(default_factory=dict)
    commits: dict[str, tuple[str | None, dict[str, str]]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    branch: str = "main"
    dirty: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.commits:
            sha = self._new_commit(None, dict(self.files))
            self.refs[f"refs/heads/{self.branch}"] = sha

    def _new_commit(self, parent: str | None, tree: dict[str, str]) -> str:
        import hashlib

        key = repr((parent, sorted(tree.items()))).encode()
        sha = hashlib.sha1(key).hexdigest()
        self.commits[sha] = (parent, dict(tree))
        return sha

    def head(self) -> str:
        return self.refs[f"refs/heads/{self.branch}"]

    def current_branch(self) -> str | None:
        return self.branch

    def dirty_files(self) -> list[str]:
        return list(self.dirty)

    def branch_sha(self, branch: str) -> str | None:
        return self.refs.get(f"refs/heads/{branch}")

    def create_branch(self, branch: str) -> str:
        self.refs[f"refs/heads/{branch}"] = self.head()
        self.branch = branch
        return self.head()

    def checkout(self, branch: str) -> None:
        self.branch = branch
        self.files = dict(self.commits[self.head()][1])

    def read(self, commit: str, path: str) -> str:
        tree = self.commits[commit][1]
        if path not in tree:
            raise RepoError(f"{path} does not exist at commit {commit[:7]}")
        return tree[path]

    def commit_file(self, parent: str, path: str, content: str, message: str, when: str) -> str:
        tree = {**self.commits[parent][1], path: content}
        sha = self._new_commit(parent, tree)
        self.refs[f"refs/heads/{self.branch}"] = sha
        self.files = dict(tree)
        return sha

    def set_ref(self, ref: str, sha: str) -> None:
        self.refs[ref] = sha

    def reset_hard(self, sha: str) -> None:
        self.refs[f"refs/heads/{self.branch}"] = sha
        self.files = dict(self.commits[sha][1])

    def changed_paths(self, a: str, b: str) -> list[str]:
        ta, tb = self.commits[a][1], self.commits[b][1]
        return sorted(p for p in set(ta) | set(tb) if ta.get(p) != tb.get(p))

    def export(self, commit: str, dest: Path) -> None:
        dest.mkdir(parents=True)
        for rel, content in self.commits[commit][1].items():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(content, encoding="utf-8")

    def exclude(self, pattern: str) -> bool:
        if pattern in self.excluded:
            return False
        self.excluded.append(pattern)
        return True

    def state_dir(self) -> Path:
        return self.root / ".git" / "autoresearch"

    def close(self) -> None:
        return None

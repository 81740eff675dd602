"""The git workspace: the research repo's working tree and the refs the loop moves.

Every move is a plain ref update or a hard reset, so each is safe to repeat after a crash, and
commits are deterministic (fixed identity, dates from the journal) so re-committing a proposal gives
the same sha.
"""

from __future__ import annotations

import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from autoresearch.errors import GitRefused, RepoError
from autoresearch.git import tarsafe
from autoresearch.git.cmd import git_bytes, git_status, run_git
from autoresearch.git.run import DEFAULT_POLICY, GitPolicy
from autoresearch.ops.safetext import printable

IDENTITY = ("autoresearch", "autoresearch@localhost")


@dataclass(frozen=True)
class Checkout:
    """A work tree (the main one or a linked one) that has a given branch checked out."""

    path: Path
    git_dir: Path
    dirty: tuple[str, ...] = ()
    """Tracked files with uncommitted changes (staged or not)."""


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
    def make_commit(self, parent: str, path: str, content: str, message: str, when: str) -> str:
        """Commit ``content`` as ``path`` on ``parent`` without touching the index, the working tree or
        any ref (safe while other lanes commit)."""
    def merge_file(self, base: str, ours: str, theirs: str) -> str | None:
        """3-way merge of three texts (``git merge-file``): the result, or None on a conflict."""
    def set_ref(self, ref: str, sha: str) -> None: ...
    def reset_hard(self, sha: str) -> None: ...
    def changed_paths(self, a: str, b: str) -> list[str]: ...
    def export(self, commit: str, dest: Path) -> None:
        """Write the files committed at ``commit`` (and nothing else) into the new folder ``dest``."""
    def exclude(self, pattern: str) -> bool:
        """Add a pattern to info/exclude unless there; True if it was added."""
    def state_dir(self) -> Path: ...
    def close(self) -> None: ...
    def move_branch(self, branch: str, new: str, old: str | None) -> bool:
        """Point ``refs/heads/<branch>`` at ``new`` only if it is at ``old`` now (None: only if it does not
        exist); False if it was not. No work tree is touched."""
    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether commit ``a`` is ``b`` or an ancestor of it."""
    def checkouts(self, branch: str) -> list[Checkout]:
        """The work trees that have ``branch`` checked out, with their uncommitted files."""
    def fast_forward(self, checkout: Checkout, sha: str) -> None:
        """Fast-forward that work tree's branch, index and files to ``sha``; RepoError if git refuses
        (it never overwrites a local change)."""
    def holds_tree_of(self, checkout: Checkout, sha: str) -> bool:
        """Whether that work tree's index and tracked files are exactly ``sha``'s tree (what a fast-forward
        killed before its ref update leaves)."""
    def reset_checkout(self, checkout: Checkout, sha: str) -> None:
        """Move that work tree's branch, index and files to ``sha`` (``reset --keep``: RepoError rather
        than losing a local change). Only for a branch left at one of the daemon's own commits."""


class GitWorkspace:
    """The real workspace, through the hardened git command line of ``git.cmd`` (hooks, fsmonitor and
    the repo's filter drivers off; a minimal environment; ``--git-dir``/``--work-tree`` pinned), each
    call bounded by ``policy`` (a timeout; lock clashes and hangs retried, see ``git.run``).

    Git's refusals (``GitRefused``) become ``RepoError`` only where they are a pre-flight problem the
    user must fix (not a repo, no commits, a missing file); at run time they stay ``GitFailed`` (exit 1)."""

    def __init__(self, root: Path, git_dir: Path | None = None, policy: GitPolicy = DEFAULT_POLICY) -> None:
        self.root = root
        self.git_dir = git_dir
        self.policy = policy

    @classmethod
    def open(cls, path: Path) -> GitWorkspace:
        """The repository whose working tree is ``path`` (a ``.git`` folder or file must be there)."""
        root = path.resolve()
        if not (root / ".git").exists():
            if root.is_dir() and _is_bare(root):
                raise RepoError(f"{path} is a bare repository; autoresearch needs a working tree")
            raise RepoError(f"{path} is not a git repository (run `git init` there, or pick the repo)")
        try:
            git_dir = Path(run_git(root, "--git-dir=.git", "rev-parse", "--absolute-git-dir"))
        except GitRefused as exc:
            raise RepoError(f"{path} is not a usable git repository: {exc}") from exc
        return cls(root, git_dir)

    def _git(self, *args: str, env: dict[str, str] | None = None, stdout: IO[bytes] | None = None) -> str:
        return run_git(self.root, *args, git_dir=self.git_dir, work_tree=self.root, env=env, stdout=stdout,
                       policy=self.policy)

    def head(self) -> str:
        try:
            return self._git("rev-parse", "--verify", "HEAD^{commit}")
        except GitRefused as exc:
            raise RepoError(f"{self.root} has no commits yet; commit the target first") from exc

    def current_branch(self) -> str | None:
        try:
            return self._git("symbolic-ref", "--short", "-q", "HEAD") or None
        except GitRefused:
            return None  # detached HEAD

    def dirty_files(self) -> list[str]:
        out = self._git("status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all")
        return [line[3:] for line in out.splitlines() if line.strip()]

    def branch_sha(self, branch: str) -> str | None:
        try:
            return self._git("rev-parse", "--verify", "-q", f"refs/heads/{branch}") or None
        except GitRefused:
            return None

    def create_branch(self, branch: str) -> str:
        self._git("checkout", "-q", "-b", branch)
        return self.head()

    def checkout(self, branch: str) -> None:
        self._git("checkout", "-q", branch)

    def read(self, commit: str, path: str) -> str:
        try:
            data = git_bytes(self.root, "cat-file", "blob", f"{commit}:{path}", git_dir=self.git_dir,
                             policy=self.policy)
        except GitRefused as exc:
            raise RepoError(f"{path} does not exist at commit {commit[:7]}") from exc
        return data.decode("utf-8")

    def commit_file(self, parent: str, path: str, content: str, message: str, when: str) -> str:
        """Commit ``content`` as ``path`` on top of ``parent``, move the checked-out branch there."""
        self.reset_hard(parent)
        (self.root / path).write_text(content, encoding="utf-8")
        self._git("add", "--", path)
        tree = self._git("write-tree")
        sha = self._git("commit-tree", tree, "-p", parent, "-m", message, env=_commit_env(when))
        self._git("update-ref", "HEAD", sha)
        return sha

    def make_commit(self, parent: str, path: str, content: str, message: str, when: str) -> str:
        with tempfile.TemporaryDirectory(prefix="autoresearch-commit-") as tmp:
            blob_file = Path(tmp) / "blob"
            blob_file.write_text(content, encoding="utf-8")
            blob = self._git("hash-object", "-w", "--no-filters", "--", str(blob_file))
            listed = self._git("ls-tree", parent, "--", path).split(maxsplit=1)
            mode = listed[0] if listed and listed[0] in ("100644", "100755") else "100644"
            index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}  # a private index: the shared one is untouched
            self._git("read-tree", parent, env=index)
            self._git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", env=index)
            tree = self._git("write-tree", env=index)
        # the message holds an agent's description: no NUL (argv cannot carry one), no terminal escape in git log
        return self._git("commit-tree", tree, "-p", parent, "-m", printable(message, keep_newlines=True),
                         env=_commit_env(when))

    def merge_file(self, base: str, ours: str, theirs: str) -> str | None:
        with tempfile.TemporaryDirectory(prefix="autoresearch-merge-") as tmp:
            paths = [Path(tmp) / name for name in ("ours", "base", "theirs")]
            for p, text in zip(paths, (ours, base, theirs), strict=True):
                p.write_text(text, encoding="utf-8")
            code, out = git_status(Path(tmp), "merge-file", "-p", "--", *(str(p) for p in paths), policy=self.policy)
        if code < 0 or code > 127:
            raise GitRefused(f"git merge-file failed (exit {code})")
        return out.decode("utf-8") if code == 0 else None

    def set_ref(self, ref: str, sha: str) -> None:
        self._git("update-ref", ref, sha)

    def reset_hard(self, sha: str) -> None:
        self._git("reset", "-q", "--hard", sha)

    def changed_paths(self, a: str, b: str) -> list[str]:
        return self._git("diff", "--no-ext-diff", "--no-textconv", "--name-only", a, b).splitlines()

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
        try:
            self._git("archive", "--format=tar", commit, stdout=out)
        except GitRefused as exc:
            raise GitRefused(f"git archive {commit[:7]} failed in {self.root}: {exc}") from exc

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

    def tracked(self, paths: list[Path]) -> list[str]:
        """Which of ``paths`` (inside the work tree) git tracks, as repo-relative names."""
        root = self.root.resolve()
        names = [p.resolve().relative_to(root).as_posix() for p in paths if p.resolve().is_relative_to(root)]
        return self._git("ls-files", "-z", "--", *names).split("\0")[:-1] if names else []

    def close(self) -> None:
        """Nothing to release: every git call is a process of its own that has ended."""

    def move_branch(self, branch: str, new: str, old: str | None) -> bool:
        try:  # update-ref's compare-and-swap: a commit someone made meanwhile is never overwritten
            self._git("update-ref", f"refs/heads/{branch}", new, old or "", env=_ident_env())
        except GitRefused:
            return False
        return True

    def is_ancestor(self, a: str, b: str) -> bool:
        code, _ = git_status(self.root, "merge-base", "--is-ancestor", a, b, git_dir=self.git_dir, policy=self.policy)
        if code not in (0, 1):
            raise GitRefused(f"git merge-base --is-ancestor {a[:7]} {b[:7]} failed (exit {code})")
        return code == 0

    def checkouts(self, branch: str) -> list[Checkout]:
        out = []
        for path, ref in _worktrees(self._git("worktree", "list", "--porcelain", "-z")):
            if ref != f"refs/heads/{branch}":
                continue
            git_dir = self.git_dir if path == self.root else _linked_git_dir(path)
            if git_dir is None:
                continue  # a linked work tree that is gone (prunable): nothing to update there
            status = run_git(path, "status", "--porcelain", "--untracked-files=no", "--ignore-submodules=all",
                             git_dir=git_dir, work_tree=path, env=_NO_LOCKS, policy=self.policy)
            out.append(Checkout(path, git_dir, tuple(line[3:] for line in status.splitlines() if line.strip())))
        return out

    def fast_forward(self, checkout: Checkout, sha: str) -> None:
        try:
            run_git(checkout.path, "-c", "gc.auto=0", "merge", "--ff-only", "--no-verify-signatures", "--no-stat",
                    "-q", sha, git_dir=checkout.git_dir, work_tree=checkout.path, env=_ident_env(), policy=self.policy)
        except GitRefused as exc:  # the user's checkout said no (an untracked file in the way): not a failure
            raise RepoError(str(exc)) from exc

    def holds_tree_of(self, checkout: Checkout, sha: str) -> bool:
        where: dict[str, Any] = {"git_dir": checkout.git_dir, "work_tree": checkout.path, "env": _NO_LOCKS,
                                 "policy": self.policy}
        try:  # each exits 1 on a difference: files against the index, the index against the commit
            run_git(checkout.path, "diff-files", "--quiet", "--ignore-submodules=all", **where)
            run_git(checkout.path, "diff-index", "--cached", "--quiet", "--ignore-submodules=all", sha, **where)
        except GitRefused:
            return False
        return True

    def reset_checkout(self, checkout: Checkout, sha: str) -> None:
        try:
            run_git(checkout.path, "reset", "-q", "--keep", sha, git_dir=checkout.git_dir, work_tree=checkout.path,
                    env=_ident_env(), policy=self.policy)
        except GitRefused as exc:
            raise RepoError(str(exc)) from exc

    def state_dir(self) -> Path:
        git_dir = Path(self._git("rev-parse", "--git-common-dir"))
        git_dir = git_dir if git_dir.is_absolute() else self.root / git_dir
        return git_dir / "autoresearch"


def _commit_env(when: str) -> dict[str, str]:
    name, email = IDENTITY
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}


_NO_LOCKS = {"GIT_OPTIONAL_LOCKS": "0"}
"""For reads of the user's checkout: git then never takes its index.lock to refresh stat data, so the
user's own git commands never find it held by the daemon."""


def _ident_env() -> dict[str, str]:
    """The daemon's identity for reflog entries (a repo without user.name must not make them fail)."""
    name, email = IDENTITY
    return {"GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}


def _worktrees(porcelain: str) -> list[tuple[Path, str | None]]:
    """(path, checked-out ref or None) of each work tree in ``git worktree list --porcelain -z``."""
    out: list[tuple[Path, str | None]] = []
    for fields in porcelain.split("\0\0"):
        attrs = dict(f.partition(" ")[::2] for f in fields.split("\0") if f)
        if "worktree" in attrs and "bare" not in attrs:
            out.append((Path(attrs["worktree"]).resolve(), attrs.get("branch")))
    return out


def _linked_git_dir(path: Path) -> Path | None:
    """The git dir a linked work tree's ``.git`` file names."""
    try:
        text = (path / ".git").read_text(encoding="utf-8")
    except OSError:
        return None
    line = text.strip()
    if not line.startswith("gitdir:"):
        return None
    git_dir = Path(line.removeprefix("gitdir:").strip())
    return git_dir if git_dir.is_absolute() else (path / git_dir).resolve()


def _is_bare(path: Path) -> bool:
    try:
        return run_git(path, f"--git-dir={path}", "rev-parse", "--is-bare-repository") == "true"
    except GitRefused:
        return False


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

    def make_commit(self, parent: str, path: str, content: str, message: str, when: str) -> str:
        return self._new_commit(parent, {**self.commits[parent][1], path: content})

    def merge_file(self, base: str, ours: str, theirs: str) -> str | None:
        """A small 3-way merge for the loop's tests: one side unchanged, lines appended by one side, or
        line-wise edits of equal-length texts; anything else is a conflict (None)."""
        if ours == base or theirs == base:
            return theirs if ours == base else ours
        b, o, t = base.splitlines(True), ours.splitlines(True), theirs.splitlines(True)
        if t[: len(b)] == b and o[: len(b)] != b:
            return "".join(o + t[len(b):])
        if o[: len(b)] == b and t[: len(b)] != b:
            return "".join(t + o[len(b):])
        if not len(b) == len(o) == len(t):
            return None
        merged = []
        for lb, lo, lt in zip(b, o, t, strict=True):
            if lo != lb and lt != lb and lo != lt:
                return None
            merged.append(lt if lo == lb else lo)
        return "".join(merged)

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

    def move_branch(self, branch: str, new: str, old: str | None) -> bool:
        if self.refs.get(f"refs/heads/{branch}") != old:
            return False
        self.refs[f"refs/heads/{branch}"] = new
        return True

    def is_ancestor(self, a: str, b: str) -> bool:
        node: str | None = b
        while node is not None:
            if node == a:
                return True
            node = self.commits[node][0]
        return False

    def checkouts(self, branch: str) -> list[Checkout]:
        return [Checkout(self.root, self.root / ".git", tuple(self.dirty))] if branch == self.branch else []

    def fast_forward(self, checkout: Checkout, sha: str) -> None:
        if self.dirty or not self.is_ancestor(self.head(), sha):
            raise RepoError(f"cannot fast-forward {checkout.path} to {sha[:7]}")
        self.reset_hard(sha)

    def holds_tree_of(self, checkout: Checkout, sha: str) -> bool:
        return False  # the fake's checkout moves in one step

    def reset_checkout(self, checkout: Checkout, sha: str) -> None:
        if self.dirty:
            raise RepoError(f"cannot reset {checkout.path} to {sha[:7]}: local changes")
        self.reset_hard(sha)

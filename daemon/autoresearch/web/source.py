"""The session the dashboard shows: its journal (followed incrementally, like ``status``), its run
logs and its commits. Read-only: it never takes the daemon's lock and never writes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from autoresearch.errors import JournalReplaced, RepoError
from autoresearch.git.cmd import run_git
from autoresearch.git.workspace import GitWorkspace
from autoresearch.journal.store import Journal, JournalState
from autoresearch.ops.config import Settings
from autoresearch.runners.base import log_tail
from autoresearch.sessions.session import JOURNAL_FILE
from autoresearch.sessions.settings import session_settings

log = structlog.get_logger("autoresearch.web")

ARCHIVE_DIR = "archive"
DIFF_LIMIT = 200_000
"""Bytes of a diff sent to the page (a rewritten target is rarely larger)."""


@dataclass
class SessionSource:
    """One session's files: the current one (``.git/autoresearch``) or an archived one
    (``.git/autoresearch/archive/<name>``, where ``init`` moves the previous session)."""

    workspace: GitWorkspace
    folder: Path
    settings: Settings
    archived: str | None = None
    _journal: Journal | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_repo(cls, repo: Path, archive: str | None = None, settings: Settings | None = None) -> SessionSource:
        ws = GitWorkspace.open(repo)
        folder = ws.state_dir()
        if archive is not None:
            archives = folder / ARCHIVE_DIR
            names = sorted(p.name for p in archives.iterdir() if p.is_dir()) if archives.is_dir() else []
            if archive not in names:
                raise RepoError(f"{ws.root} has no archived session {archive!r}; archived sessions: "
                                f"{', '.join(names) or 'none'}")
            folder = archives / archive
        if not (folder / JOURNAL_FILE).exists():
            raise RepoError(f"{ws.root} has no autoresearch session; run `autoresearch init {repo}` first")
        settings = settings or _session_settings(ws, folder)
        return cls(workspace=ws, folder=folder, settings=settings, archived=archive)

    @property
    def journal_path(self) -> Path:
        return self.folder / JOURNAL_FILE

    def archives(self) -> list[str]:
        archives = self.workspace.state_dir() / ARCHIVE_DIR
        return sorted(p.name for p in archives.iterdir() if p.is_dir()) if archives.is_dir() else []

    def signature(self) -> tuple[int, int, int] | None:
        """Inode, size and mtime of the journal: changes with every record, cheap to poll."""
        try:
            st = self.journal_path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def load(self) -> JournalState:
        """The journal folded so far; reads only what was appended since the last call. A journal
        replaced by a new ``init`` is the new session: followed from its start."""
        with self._lock:
            if self._journal is None:
                self._journal = Journal(self.journal_path)
            try:
                return self._journal.load()
            except JournalReplaced as exc:
                log.info("web.journal_replaced", reason=str(exc))
                self._journal = Journal(self.journal_path)
                return self._journal.load()

    def log_path(self, n: int) -> Path:
        return self.folder / "runs" / str(n) / "run.log"

    def log_tail(self, n: int, max_bytes: int = 6000) -> str:
        """The end of experiment ``n``'s run log, from a line start (empty when there is none yet)."""
        text = log_tail(self.log_path(n), max_bytes)
        if len(text.encode()) >= max_bytes and "\n" in text:
            text = text.split("\n", 1)[1]  # the first line was cut
        return text

    def diff(self, parent: str, commit: str) -> str:
        """``git diff`` of a commit against its parent, through the hardened git (no external diff
        drivers, no textconv); cut at ``DIFF_LIMIT`` bytes."""
        ws = self.workspace
        text = run_git(ws.root, "diff", "--no-color", "--no-ext-diff", "--no-textconv", parent, commit, "--",
                       git_dir=ws.git_dir, work_tree=ws.root)
        if len(text) > DIFF_LIMIT:
            return text[:DIFF_LIMIT] + f"\n... (cut at {DIFF_LIMIT} characters)\n"
        return text


def _session_settings(ws: GitWorkspace, folder: Path) -> Settings:
    """The session's own settings: its branch's committed autoresearch.toml (not the user's checkout),
    overridden by the environment, as ``status`` reads them."""
    return session_settings(ws, Journal(folder / JOURNAL_FILE).load().tag)

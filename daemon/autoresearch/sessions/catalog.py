"""Every session of a repo: the active one (``.git/autoresearch/journal.jsonl``, ``results.tsv`` at the
repo root) and the archived ones (``.git/autoresearch/archive/<tag>-<UTC time>/``, each with its own
journal, run logs, results.tsv and report). ``init --tag new`` archives the active session; ``run --tag
old`` brings an archived one back (archiving the active one in its place)."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from autoresearch.errors import RepoError
from autoresearch.journal.ledger import RESULTS_FILE, write_atomic
from autoresearch.journal.store import Journal
from autoresearch.ops.guards import daemon_lock

ARCHIVE_DIR = "archive"
JOURNAL = "journal.jsonl"  # = session.JOURNAL_FILE (session imports this module)
MOVED = (JOURNAL, "runs", "report")  # what belongs to one session; the cache and eval data are shared


@dataclass(frozen=True)
class SessionFiles:
    """Where one session's files are."""

    tag: str
    folder: Path
    """The state folder for the active session, its archive folder otherwise."""
    results: Path
    active: bool

    @property
    def journal(self) -> Path:
        return self.folder / JOURNAL

    @property
    def report_dir(self) -> Path:
        return self.folder / "report"

    @property
    def branch(self) -> str:
        return f"autoresearch/{self.tag}"


def active(repo: Path, state_dir: Path) -> SessionFiles | None:
    tag = Journal(state_dir / JOURNAL).load().tag
    return SessionFiles(str(tag), state_dir, repo / RESULTS_FILE, True) if tag else None


def archived(state_dir: Path) -> list[SessionFiles]:
    """The archived sessions, oldest first (their folders end in the UTC time they were archived)."""
    root = state_dir / ARCHIVE_DIR
    found = []
    for folder in sorted(root.iterdir(), key=lambda p: p.name.rsplit("-", 1)[-1]) if root.is_dir() else []:
        tag = Journal(folder / JOURNAL).load().tag if (folder / JOURNAL).is_file() else None
        if tag:
            found.append(SessionFiles(str(tag), folder, folder / RESULTS_FILE, False))
    return found


def all_sessions(repo: Path, state_dir: Path) -> list[SessionFiles]:
    """Archived sessions, oldest first, then the active one."""
    current = active(repo, state_dir)
    return archived(state_dir) + ([current] if current else [])


def find(repo: Path, state_dir: Path, tag: str | None) -> SessionFiles:
    """The session named ``tag`` (the newest of that tag), or the active one for None; RepoError (exit 2) else."""
    sessions = all_sessions(repo, state_dir)
    if tag is None:
        current = active(repo, state_dir)
        if current is None:
            raise RepoError(f"{repo} has no active autoresearch session; run `autoresearch init {repo}` first"
                            + (f" (archived: {', '.join(s.tag for s in sessions)}; pick one with --tag)"
                               if sessions else ""))
        return current
    matches = [s for s in sessions if s.tag == tag]
    if not matches:
        known = ", ".join(s.tag for s in sessions) or "none"
        raise RepoError(f"{repo} has no session {tag!r} (sessions: {known}; `autoresearch sessions {repo}` lists them)")
    return matches[-1]


def archive_active(repo: Path, state_dir: Path, now: dt.datetime | None = None) -> SessionFiles | None:
    """Move the active session's journal, run logs and report to ``archive/<tag>-<time>/``, with a copy of
    its results.tsv (the next session rewrites the one at the repo root). The caller holds the lock."""
    current = active(repo, state_dir)
    if current is None:
        return None
    dest = state_dir / ARCHIVE_DIR / f"{current.tag}-{(now or dt.datetime.now(dt.UTC)):%Y%m%dT%H%M%S%f}"
    dest.mkdir(parents=True)
    if current.results.is_file():
        write_atomic(dest / RESULTS_FILE, current.results.read_text(encoding="utf-8"))
    for name in MOVED[1:] + MOVED[:1]:  # the journal last: until it moves, the session is still the active one
        if (state_dir / name).exists():
            shutil.move(str(state_dir / name), str(dest / name))
    return SessionFiles(current.tag, dest, dest / RESULTS_FILE, False)


def restore(repo: Path, state_dir: Path, session: SessionFiles) -> SessionFiles:
    """Make an archived session the active one again (the active one is archived first). The caller
    holds the lock."""
    archive_active(repo, state_dir)
    if session.results.is_file():
        write_atomic(repo / RESULTS_FILE, session.results.read_text(encoding="utf-8"))
    for name in MOVED:  # the journal first: from here on the session is the active one
        if (session.folder / name).exists():
            shutil.move(str(session.folder / name), str(state_dir / name))
    shutil.rmtree(session.folder)
    return SessionFiles(session.tag, state_dir, repo / RESULTS_FILE, True)


def switch_to(repo: Path, state_dir: Path, tag: str) -> tuple[SessionFiles, SessionFiles | None]:
    """Make session ``tag`` the active one (for ``run --tag``); returns it and the session archived in its
    place (None when it already was the active one). Under the daemon lock: never under a running daemon."""
    wanted = find(repo, state_dir, tag)
    if wanted.active:
        return wanted, None
    with daemon_lock(state_dir, action=f"switch to session {tag}"):
        wanted = find(repo, state_dir, tag)  # again, under the lock
        if wanted.active:
            return wanted, None
        previous = active(repo, state_dir)
        restore(repo, state_dir, wanted)
    moved = archived(state_dir)[-1] if previous is not None else None
    return find(repo, state_dir, tag), moved


def archived_note(repo: Path, files: SessionFiles) -> str:
    """What init and run say about a session they archived: where it is and how to reach it."""
    return (f"the previous session {files.tag!r} is archived in {files.folder} (its branch {files.branch}, "
            f"results.tsv, journal, run logs and report are kept): `autoresearch status {repo} --tag {files.tag}` "
            f"shows it, `autoresearch run {repo} --tag {files.tag}` resumes it")


def remove_archived(repo: Path, state_dir: Path, tag: str) -> SessionFiles:
    """Delete an archived session's folder (journal, run logs, report, results.tsv); its branch and
    experiment refs stay in git. The active session is refused: it is what `run` resumes."""
    files = find(repo, state_dir, tag)
    if files.active:
        raise RepoError(f"session {tag!r} is the active one; only archived sessions are removed "
                        f"(`autoresearch init {repo} --tag NEW` archives it)")
    shutil.rmtree(files.folder)
    return files

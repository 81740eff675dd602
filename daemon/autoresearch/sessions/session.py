"""A research session: one tag, one branch ``autoresearch/<tag>``, and its state under
``.git/autoresearch/`` (journal, run logs, cache). ``init_session`` validates everything first and
changes nothing unless every check passes."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from autoresearch.errors import RepoError
from autoresearch.git.workspace import Workspace
from autoresearch.journal.ledger import RESULTS_FILE, header, write_atomic
from autoresearch.journal.store import Journal
from autoresearch.ops.config import CONFIG_FILE, Settings
from autoresearch.sessions.catalog import archive_active
from autoresearch.sessions.settings import measured as measured_of

JOURNAL_FILE = "journal.jsonl"


def default_tag(today: dt.date | None = None) -> str:
    day = today or dt.datetime.now().astimezone().date()
    return day.strftime("%b%d").lower()


@dataclass(frozen=True)
class Session:
    repo: Path
    state_dir: Path
    tag: str

    @property
    def branch(self) -> str:
        return f"autoresearch/{self.tag}"

    @functools.cached_property
    def journal(self) -> Journal:
        """One Journal per session, so its incremental fold is shared by the loop and the phases."""
        return Journal(self.state_dir / JOURNAL_FILE)

    def run_dir(self, n: int | str) -> Path:
        return self.state_dir / "runs" / str(n)

    def cache_dir(self, settings: Settings) -> Path:
        path = settings.cache_dir or self.state_dir / "cache"
        return path if path.is_absolute() else self.repo / path

    @property
    def home_dir(self) -> Path:
        """The session's persistent home (HOME in every run), shared by the repo's sessions like the cache."""
        return self.state_dir / "home"

    @property
    def env_dir(self) -> Path:
        """The repo's own environment (built by ``setup``), at /workspace/.venv inside runs."""
        return self.state_dir / "env"

    def experiment_ref(self, n: int) -> str:
        return f"refs/autoresearch/{self.tag}/{n}"


def load_session(ws: Workspace) -> Session:
    state_dir = ws.state_dir()
    tag = Journal(state_dir / JOURNAL_FILE).load().tag
    if not tag:
        raise RepoError(f"{ws.root} has no autoresearch session; run `autoresearch init {ws.root}` first")
    return Session(repo=ws.root, state_dir=state_dir, tag=str(tag))


def check_repo(ws: Workspace, settings: Settings, tag: str) -> None:
    """Every precondition of init; raises RepoError/ConfigError and touches nothing."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*", tag) or tag.endswith(".lock"):
        raise RepoError(f"--tag {tag!r} cannot name a branch: use letters, digits, '-', '_' and single dots")
    head = ws.head()
    dirty = ws.dirty_files()
    if dirty:
        raise RepoError(f"{ws.root} has uncommitted changes ({', '.join(dirty[:5])}); commit or stash them first")
    branch = f"autoresearch/{tag}"
    if ws.branch_sha(branch) is not None:
        raise RepoError(f"branch {branch} already exists; pick another --tag, or `autoresearch run` to resume it")
    texts = {}
    for path, key in ((settings.target, "target"), *((p, "readonly") for p in settings.readonly)):
        try:
            texts[path] = ws.read(head, path)
        except RepoError as exc:
            raise RepoError(f"{path} is not a committed file of {ws.root} (commit it, or fix "
                            f"{settings.source_of(key)})") from exc
    if not any(mentions_metric(text, settings.metric) for text in (*texts.values(), settings.run)):
        raise RepoError(
            f"metric {settings.metric!r} is unknown (from {settings.source_of('metric')}): neither "
            f"{settings.target} nor the read-only files show it as '{settings.metric}:' (the run must print a "
            f"line '{settings.metric}: <value>')"
        )


def mentions_metric(text: str, metric: str) -> bool:
    """Whether ``text`` has the metric as a whole word followed by ``:`` (spaces allowed between), as in
    ``print(f"val_bpb:          {val_bpb:.6f}")`` or ``print("val_bpb:", x)``; ``val_los`` does not match
    ``val_loss:``, and neither matches a format field like ``{val_bpb:.6f}``."""
    return re.search(r"(?<![\w.{])" + re.escape(metric) + r"(?![\w.])\s*:", text) is not None


def start_session(ws: Workspace, settings: Settings, tag: str, config_text: str | None) -> Session:
    """Create the branch (committing a new autoresearch.toml there), results.tsv and the journal. The
    user's checkout stays as it is: the branch is made beside it, never checked out."""
    state_dir = ws.state_dir()
    _archive_previous(ws.root, state_dir)
    base = ws.head()
    if config_text is not None:  # through a private index: the user's index and files are untouched
        when = dt.datetime.now(dt.UTC).isoformat()
        base = ws.make_commit(base, CONFIG_FILE, config_text, "autoresearch: add experiment config", when)
    if not ws.move_branch(f"autoresearch/{tag}", base, None):
        raise RepoError(f"branch autoresearch/{tag} appeared meanwhile; pick another --tag")
    ws.exclude(f"/{RESULTS_FILE}")
    ws.exclude(f"/.{RESULTS_FILE}.*")  # write_atomic's temp files
    write_atomic(ws.root / RESULTS_FILE, header(settings.metric))
    session = Session(repo=ws.root, state_dir=state_dir, tag=tag)
    session.journal.append({"type": "session", "tag": tag, "branch": session.branch, "base": base})
    session.journal.append({"type": "config", "measured": measured_of(settings)})
    return session


def _archive_previous(repo: Path, state_dir: Path) -> None:
    """An earlier session's journal, logs, report and results.tsv move to archive/<tag>-<time>/ (the cache
    stays shared); `autoresearch sessions` lists it, and --tag reaches it."""
    archive_active(repo, state_dir)

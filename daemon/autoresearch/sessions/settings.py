"""A session's settings: ``autoresearch.toml`` as committed on the session branch, then ``AUTORESEARCH_*``
variables, then flags, read afresh by every ``run`` (and by ``status`` and ``report``).

Limits, agent and runner settings may change between runs. The keys in ``MEASURED`` decide what the
metric means (what runs, for how long, how it is read and judged better); results measured under other
values do not compare, so the first ``run`` (or ``init``) pins them in the journal (a ``config`` record)
and a later ``run`` with other values exits 2 and says to start a new session.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from autoresearch.errors import ConfigError, GitRefused, RepoError
from autoresearch.git.workspace import Workspace
from autoresearch.ops.config import CONFIG_FILE, Settings, load_settings

MEASURED = ("target", "readonly", "prepare", "run", "metric", "direction", "budget", "evaluate", "eval_data",
            "metric_source", "cache_dir")
"""Keys whose change makes a new measurement incomparable with the session's earlier ones."""


def load_session_settings(ws: Workspace, branch: str, **overrides: Any) -> Settings:
    """The settings of the session on ``branch``: its committed ``autoresearch.toml`` (whatever the user's
    checkout holds), overridden by the environment and ``overrides``."""
    sha = ws.branch_sha(branch)
    try:
        text = None if sha is None else ws.read(sha, CONFIG_FILE)
    except RepoError:
        text = None  # the branch has no config file: defaults, environment and flags
    with tempfile.TemporaryDirectory(prefix="autoresearch-config-") as tmp:
        path = Path(tmp) / CONFIG_FILE
        if text is not None:
            path.write_text(text, encoding="utf-8")
        return load_settings(ws.root, config_file=path, config_label=f"{branch}:{CONFIG_FILE}", **overrides)


def measured(settings: Settings) -> dict[str, Any]:
    """The values of the ``MEASURED`` keys, as JSON values (what the ``config`` record holds)."""
    dumped = settings.model_dump(mode="json", include=set(MEASURED))
    return {key: dumped[key] for key in MEASURED}


def check_unchanged(pinned: dict[str, Any], settings: Settings, tag: str | None) -> None:
    """ConfigError (exit 2) naming each measured key whose value differs from the session's pinned one."""
    now = measured(settings)
    changed = [key for key in MEASURED if key in pinned and pinned[key] != now[key]]
    if not changed:
        return
    lines = [f"  {key}: {pinned[key]!r} in this session, now {now[key]!r} (from {settings.source_of(key)})"
             for key in changed]
    raise ConfigError(
        f"{', '.join(changed)} changed since session {tag or '?'} began: these decide what is measured, and "
        "results under other values would not compare; put them back, or start a new session "
        "(`autoresearch init REPO --tag NEW`; this one stays on its branch)\n" + "\n".join(lines)
    )



def settings_of_repo(repo: Path) -> Settings:
    """The settings of ``repo``'s session when it has one (its branch's config), else of its checkout."""
    from autoresearch.git.workspace import GitWorkspace
    from autoresearch.journal.store import Journal

    try:
        ws = GitWorkspace.open(repo)
        tag = Journal(ws.state_dir() / "journal.jsonl").load().tag
    except (RepoError, GitRefused):
        return load_settings(repo)
    return session_settings(ws, tag)


def session_settings(ws: Workspace, tag: str | None) -> Settings:
    """The settings of the session ``tag`` (its branch's config); without a tag, of the checkout."""
    return load_settings(ws.root) if not tag else load_session_settings(ws, f"autoresearch/{tag}")

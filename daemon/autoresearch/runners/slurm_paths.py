"""Where a Slurm session's files live: under ``slurm.shared_dir``, which every node sees.

The state folder (``.git/autoresearch``) keeps the journal and results; its ``runs``, ``snapshots``,
``home``, ``env``, ``cache`` and ``eval`` folders become links into ``<shared_dir>/<repo id>/`` (``runs``
into a folder of the session's own under ``runs/``), so the
phases, the agent's log tool, ``status`` and ``report`` keep their paths
(``.git/autoresearch/runs/<n>/run.log``) while every byte a job reads or writes is on the shared folder
and nothing is copied through the daemon host's disk. A folder that already holds files (a session
that ran with a local runner before) is moved there once.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shutil
import subprocess
from pathlib import Path

from autoresearch.errors import ConfigError, RunnerError

LINKED = ("runs", "snapshots", "home", "env", "cache", "eval")


def state_dir_of(repo: Path) -> Path:
    """The repo's state folder (``<git common dir>/autoresearch``), as ``Workspace.state_dir`` finds it."""
    try:
        done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--git-common-dir"], capture_output=True,
                              text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise RunnerError(f"cannot find the git folder of {repo}: {exc}") from exc
    git_dir = Path(done.stdout.strip())
    return (git_dir if git_dir.is_absolute() else repo / git_dir) / "autoresearch"


def shared_root(shared_dir: Path, repo_id: str) -> Path:
    return shared_dir / repo_id


def link_state(state_dir: Path, shared_dir: Path, repo_id: str) -> Path:
    """Make each of the state folder's ``LINKED`` folders a link into the shared folder (idempotent);
    returns the repo's folder there. ConfigError (exit 2) when the shared folder cannot be written."""
    root = shared_root(shared_dir, repo_id)
    try:
        root.mkdir(parents=True, exist_ok=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        for name in LINKED:
            if name == "runs":
                _link_session_runs(state_dir / name, root / name)
            else:
                _link(state_dir / name, root / name)
    except OSError as exc:
        raise ConfigError(f"slurm.shared_dir ({shared_dir}) cannot hold the session's files: {exc}") from exc
    return root


def _link_session_runs(local: Path, runs: Path) -> None:
    """``runs`` belongs to one session (``sessions.MOVED``: archived with its journal, link and all): each
    session's link gets a folder of its own under ``runs/``, so a new session never writes into an archived
    one's logs."""
    if local.is_symlink() and runs.resolve() in local.resolve().parents:
        return
    runs.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    _link(local, runs / f"{stamp}-{secrets.token_hex(3)}")


def _link(local: Path, shared: Path) -> None:
    shared.mkdir(exist_ok=True)
    if local.is_symlink():
        if local.resolve() == shared.resolve():
            return
        local.unlink()  # a link to another shared folder (slurm.shared_dir changed): follow the setting
    elif local.is_dir():
        for entry in local.iterdir():  # files of a local session: moved, not lost
            target = shared / entry.name
            if not target.exists():
                shutil.move(str(entry), str(target))
        shutil.rmtree(local, ignore_errors=True)
    local.symlink_to(shared, target_is_directory=True)

"""The bundled example research repo (package data in ``autoresearch/example/``)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from autoresearch.errors import UserError
from autoresearch.git.cmd import run_git
from autoresearch.git.workspace import IDENTITY

FILES = ("train.py", "prepare.py", "evaluate.py", "safe_export.py", "program.md", "autoresearch.toml")


def write_example(dest: Path) -> Path:
    """Write the example as a fresh git repo with one commit on ``main``."""
    if dest.exists() and any(dest.iterdir()):
        raise UserError(f"{dest} exists and is not empty; pick a new folder for the example")
    dest.mkdir(parents=True, exist_ok=True)
    source = importlib.resources.files("autoresearch") / "example"
    for name in FILES:
        (dest / name).write_bytes((source / name).read_bytes())
    (dest / ".gitignore").write_text("__pycache__/\n")
    name, email = IDENTITY
    env = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "Example research repo"]):
        run_git(dest, *args, env=env)
    return dest

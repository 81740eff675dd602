"""The daemon's one way to run git: hardened configuration, a minimal environment, a pinned repository.

Whatever wrote inside ``.git`` (a run without a sandbox, an agent) must not be able to make the
daemon's own git calls run code. Every call therefore gets, on the command line (which overrides
every config file, ``.git/config`` included):

- hooks off (``core.hooksPath=/dev/null``: ``reference-transaction``, ``post-checkout``, ...), no
  fsmonitor (``core.fsmonitor``), no pager, no SSH command, no transport (``protocol.allow=never``),
  no signing program, no submodule recursion, no global attributes file;
- every filter driver (``filter.<name>.clean/smudge/process``) defined in the repository's own config
  (``local``/``worktree`` scope) emptied and made optional, re-read before each call because the file
  may change between calls (drivers of the system and global config, e.g. git-lfs, stay: the
  administrator set those up);
- an explicit ``--git-dir`` and ``--work-tree`` where the caller knows them, so a planted
  ``core.worktree`` cannot point a ``reset --hard`` at another folder;
- the environment of ``privacy.helper_env``: no secret and no ``GIT_*`` variable of the daemon's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from autoresearch.errors import RepoError
from autoresearch.privacy import helper_env

HARDENING = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.attributesFile=/dev/null",
    "protocol.allow=never",
    "submodule.recurse=false",
    "commit.gpgSign=false",
    "gpg.program=false",
)
"""``-c`` settings on every git command the daemon runs."""

_TRUSTED_SCOPES = ("system", "global")
_FILTER_KEYS = ("clean", "smudge", "process")


def git_argv(*args: str, git_dir: Path | None = None, work_tree: Path | None = None) -> list[str]:
    """The hardened command line for ``git <args>`` (filter drivers are neutralized by ``git_env``)."""
    argv = ["git"]
    for setting in HARDENING:
        argv += ["-c", setting]
    if git_dir is not None:
        argv.append(f"--git-dir={git_dir}")
    if work_tree is not None:
        argv.append(f"--work-tree={work_tree}")
    return [*argv, *args]


def git_env(cwd: Path, git_dir: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The helper environment plus ``GIT_CONFIG_*`` entries that empty the repo's own filter drivers.

    ``GIT_CONFIG_KEY_n``/``VALUE_n`` rather than ``-c``: a driver name may hold ``=``, which ``-c``
    cannot express.
    """
    overrides: list[tuple[str, str]] = []
    for name in _local_filter_drivers(cwd, git_dir):
        overrides += [(f"filter.{name}.{key}", "") for key in _FILTER_KEYS]
        overrides.append((f"filter.{name}.required", "false"))
    env = helper_env({"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", **(extra or {})})
    env["GIT_CONFIG_COUNT"] = str(len(overrides))
    for i, (key, value) in enumerate(overrides):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _local_filter_drivers(cwd: Path, git_dir: Path | None) -> list[str]:
    """Names of filter drivers with a command set outside the system and global config files."""
    argv = git_argv("config", "--list", "--show-scope", "--name-only", "-z", git_dir=git_dir)
    try:
        done = subprocess.run(argv, cwd=cwd, env=helper_env(), capture_output=True, check=False)
    except OSError:
        return []  # no git, or no such folder: the command itself will fail and say why
    if done.returncode != 0:
        return []  # no readable config: the command itself will fail and say why
    items = done.stdout.split(b"\0")
    names: set[str] = set()
    for scope, key in zip(items[0::2], items[1::2], strict=False):
        text = key.decode("utf-8", "surrogateescape")
        section, _, rest = text.partition(".")
        name, _, leaf = rest.rpartition(".")
        if scope.decode() not in _TRUSTED_SCOPES and section.lower() == "filter" and leaf.lower() in _FILTER_KEYS:
            names.add(name)
    return sorted(names)


def run_git(
    cwd: Path,
    *args: str,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | None = None,
) -> str:
    """Run hardened ``git <args>`` in ``cwd``; its stdout without the final newline (or into ``stdout``).

    Raises RepoError with git's message when git fails or cannot be started.
    """
    out = git_bytes(cwd, *args, git_dir=git_dir, work_tree=work_tree, env=env, stdout=stdout).decode(
        "utf-8", "surrogateescape"
    )
    return out[:-1] if out.endswith("\n") else out


def git_bytes(
    cwd: Path,
    *args: str,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: IO[bytes] | None = None,
) -> bytes:
    """``run_git`` with stdout as it came (empty when it went into ``stdout``)."""
    argv = git_argv(*args, git_dir=git_dir, work_tree=work_tree)
    try:
        done = subprocess.run(
            argv, cwd=cwd, env=git_env(cwd, git_dir, env), stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE, check=False,
        )  # fmt: skip
    except OSError as exc:
        raise RepoError(f"cannot run git in {cwd}: {exc.strerror} (is git installed and on PATH?)") from exc
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace").strip()
        raise RepoError(f"git {' '.join(args)} failed in {cwd}: {stderr}")
    return done.stdout or b""

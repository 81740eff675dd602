"""The daemon's one way to run git: hardened configuration, a minimal environment, a pinned repository.

Whatever wrote inside ``.git`` (a run without a sandbox, an agent) must not be able to make the
daemon's own git calls run code. Every call therefore gets, on the command line (which overrides
every config file, ``.git/config`` included):

- hooks off (``core.hooksPath=/dev/null``: ``reference-transaction``, ``post-checkout``, ...), no
  fsmonitor (``core.fsmonitor``), no pager, no SSH command, no transport (``protocol.allow=never``),
  no signing program, no credential helper, no submodule recursion, no global attributes or ignore
  file (both default to files under ``$XDG_CONFIG_HOME/git``);
- every filter driver (``filter.<name>.clean/smudge/process``) defined in the repository's own config
  (``local``/``worktree`` scope) emptied and made optional, re-read before each call because the file
  may change between calls (drivers of the system config, e.g. git-lfs installed with
  ``git lfs install --system``, stay: the administrator set those up);
- no global config at all (``GIT_CONFIG_GLOBAL=/dev/null``): ``~/.gitconfig`` and
  ``$XDG_CONFIG_HOME/git/config`` live where the command agent's CLI keeps its own files, and a
  planted ``filter.lfs.smudge`` or ``trace2.eventTarget`` there would run code in, or append to any
  file as, the daemon. The system config (``/etc/gitconfig``) is read only while it is root's and
  writable by nobody else (else ``GIT_CONFIG_NOSYSTEM``); sandboxes see it read-only;
- ``safe.directory`` for the folder the daemon itself chose to run git in (command scope: git reads
  it from nowhere else now), so a root daemon works in a repository another user owns;
- an explicit ``--git-dir`` and ``--work-tree`` where the caller knows them, so a planted
  ``core.worktree`` cannot point a ``reset --hard`` at another folder;
- the environment of ``privacy.helper_env``: no secret and no ``GIT_*`` variable of the daemon's.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from autoresearch.errors import GitTimeout
from autoresearch.git.run import DEFAULT_POLICY, GitPolicy, execute
from autoresearch.ops.privacy import helper_env

HARDENING = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.sshCommand=false",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "protocol.allow=never",
    "submodule.recurse=false",
    "commit.gpgSign=false",
    "gpg.program=false",
    "credential.helper=",
)
"""``-c`` settings on every git command the daemon runs."""

SYSTEM_CONFIG = Path("/etc/gitconfig")
"""Where Debian's (and most distributions') git reads its system config."""
_TRUSTED_SCOPES = ("system",)
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


def git_env(cwd: Path, git_dir: Path | None = None, extra: Mapping[str, str] | None = None,
            timeout_s: float = DEFAULT_POLICY.timeout_s) -> dict[str, str]:
    """The helper environment plus ``GIT_CONFIG_*`` entries: only trusted config files, ``safe.directory``
    for ``cwd``, and the repo's own filter drivers emptied.

    ``GIT_CONFIG_KEY_n``/``VALUE_n`` rather than ``-c``: a driver name may hold ``=``, which ``-c``
    cannot express.
    """
    base = _trusted_env(cwd, {"GIT_TERMINAL_PROMPT": "0", "GIT_PAGER": "cat", **(extra or {})})
    overrides = _config_pairs(base)
    for name in _local_filter_drivers(cwd, git_dir, base, timeout_s):
        overrides += [(f"filter.{name}.{key}", "") for key in _FILTER_KEYS]
        overrides.append((f"filter.{name}.required", "false"))
    return _with_pairs(base, overrides)


def _trusted_env(cwd: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The helper environment reading no config file an agent or a run can write, trusting ``cwd``."""
    env = helper_env({**(extra or {}), "GIT_CONFIG_GLOBAL": os.devnull})
    if system_config_trusted(SYSTEM_CONFIG):
        env["GIT_CONFIG_SYSTEM"] = str(SYSTEM_CONFIG)
    else:
        env["GIT_CONFIG_NOSYSTEM"] = "1"
    with contextlib.suppress(OSError):
        cwd = cwd.resolve()
    return _with_pairs(env, [("safe.directory", str(cwd))])


def system_config_trusted(path: Path) -> bool:
    """A system git config the daemon may read: absent, or a regular file of root's nobody else can write."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _config_pairs(env: Mapping[str, str]) -> list[tuple[str, str]]:
    count = int(env.get("GIT_CONFIG_COUNT", "0"))
    return [(env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"]) for i in range(count)]


def _with_pairs(env: Mapping[str, str], pairs: list[tuple[str, str]]) -> dict[str, str]:
    """``env`` with exactly ``pairs`` as its command-scope config."""
    out = {k: v for k, v in env.items() if not k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))}
    out["GIT_CONFIG_COUNT"] = str(len(pairs))
    for i, (key, value) in enumerate(pairs):
        out[f"GIT_CONFIG_KEY_{i}"] = key
        out[f"GIT_CONFIG_VALUE_{i}"] = value
    return out


def _local_filter_drivers(cwd: Path, git_dir: Path | None, env: Mapping[str, str], timeout_s: float) -> list[str]:
    """Names of filter drivers with a command set outside the system config file (``env``: the trusted
    environment, so git lists the very files the command will read)."""
    argv = git_argv("config", "--list", "--show-scope", "--name-only", "-z", git_dir=git_dir)
    try:
        done = subprocess.run(argv, cwd=cwd, env=dict(env), capture_output=True, check=False, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # not "no drivers": the command would run with them
        raise GitTimeout(f"git config --list did not finish within {timeout_s:g} s in {cwd}") from exc
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
    policy: GitPolicy = DEFAULT_POLICY,
) -> str:
    """Run hardened ``git <args>`` in ``cwd``; its stdout without the final newline (or into ``stdout``).

    Raises GitRefused with git's message when git fails, GitBusy / GitTimeout when a lock stayed held or
    git hung through ``policy``'s retries, RepoError when git cannot be started.
    """
    out = git_bytes(cwd, *args, git_dir=git_dir, work_tree=work_tree, env=env, stdout=stdout, policy=policy).decode(
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
    policy: GitPolicy = DEFAULT_POLICY,
) -> bytes:
    """``run_git`` with stdout as it came (empty when it went into ``stdout``)."""
    argv = git_argv(*args, git_dir=git_dir, work_tree=work_tree)
    return execute(argv, cwd, lambda: git_env(cwd, git_dir, env, policy.timeout_s), stdout, policy).stdout


def git_status(cwd: Path, *args: str, git_dir: Path | None = None,
               policy: GitPolicy = DEFAULT_POLICY) -> tuple[int, bytes]:
    """Hardened ``git <args>`` whose exit status is an answer, not a failure (``merge-file``: the number
    of conflicts): returns (status, stdout). Raises only when git cannot be started, stays locked or hangs."""
    argv = git_argv(*args, git_dir=git_dir)
    done = execute(argv, cwd, lambda: git_env(cwd, git_dir, timeout_s=policy.timeout_s), None, policy, answer=True)
    return done.returncode, done.stdout

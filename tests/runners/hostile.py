"""Running the hostile harness as a separate daemon process: as root, or as nobody with the docker group."""

from __future__ import annotations

import grp
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.subprocs import reaped

NOBODY = 65534
ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"ANTHROPIC_API_KEY": "sk-ant-hostile1", "OPENAI_API_KEY": "sk-hostile2", "GITHUB_TOKEN": "ghp_hostile3"}
"""In the stand-in daemon's environment (so in its /proc/<pid>/environ); none may reach a run's output."""
FORK_300 = (
    "import subprocess\nprocs, failed = [], 0\n"
    "for _ in range(300):\n"
    "    try: procs.append(subprocess.Popen(['sleep', '30']))\n"
    "    except OSError: failed += 1\n"
    "print('spawned', len(procs), 'failed', failed, flush=True)\n"
)
"""A run that tries to start 300 processes; ``spawned`` reads what it managed from its log."""


def spawned(log: str) -> tuple[int, int]:
    """(processes started, starts that failed) as FORK_300 printed them."""
    words = log.split("spawned", 1)[1].split()
    return int(words[0]), int(words[2])


@contextmanager
def workdir() -> Iterator[Path]:
    """A folder the stand-in daemon owns whichever user it runs as (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="ar-hostile-"))
    os.chown(path, NOBODY, NOBODY) if os.geteuid() == 0 else None
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def daemon_argv(config: Path, user: str) -> list[str]:
    """The harness command line, as ``user``."""
    return as_user([sys.executable, "-m", "tests.runners.hostile_harness", str(config)], user)


def as_user(argv: list[str], user: str) -> list[str]:
    """``argv`` as root, or as nobody (uid 65534, with the docker group, like the unit's daemon)."""
    if user == "root":
        return argv
    if os.geteuid() != 0:
        pytest.skip("the non-root variant switches users, which needs root")
    try:
        groups = str(grp.getgrnam("docker").gr_gid)
    except KeyError:
        groups = str(NOBODY)
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", f"--groups={groups}", *argv]
    # A venv's interpreter is its base's: both prefixes must be readable by nobody.
    hidden = sorted({p for p in (Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())
                     if not os.access(p, os.R_OK) or not _world_traversable(p)})
    if hidden:
        # The interpreter lives under a 0700 home (pyenv in /root): show it to nobody in a private mount namespace.
        if not all(str(p).startswith("/root/") for p in hidden):
            pytest.skip(f"the interpreter at {hidden[0]} is not readable by nobody")
        keep = "".join(f"mkdir -p /tmp/.ar-py-$$-{i} && mount --bind {p} /tmp/.ar-py-$$-{i} && "
                       for i, p in enumerate(hidden))
        back = "".join(f"mkdir -p {p} && mount --bind /tmp/.ar-py-$$-{i} {p} && rmdir /tmp/.ar-py-$$-{i} 2>/dev/null; "
                       for i, p in enumerate(hidden))
        script = f"{keep}mount -t tmpfs -o mode=755 tmpfs /root && {back}exec {shlex.join(drop)}"
        return ["unshare", "-m", "sh", "-c", script]
    return drop


def give_to_nobody(path: Path) -> None:
    """Hand a tree the test made to the non-root daemon (and leave it world-readable)."""
    for p in (path, *path.rglob("*")):
        os.chown(p, NOBODY, NOBODY, follow_symlinks=False)


def _world_traversable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


def start_daemon(dir_: Path, script: str, user: str, budget: float = 0.5, grace: float = 0.5,
                 repo_id: str = "hostile", env: dict[str, str] | None = None,
                 settings: dict[str, Any] | None = None) -> subprocess.Popen[str]:
    config = dir_ / "config.json"
    config.write_text(json.dumps({"dir": str(dir_), "script": script, "budget": budget, "grace": grace,
                                  "repo_id": repo_id, "settings": settings or {}}))
    config.chmod(0o644)
    environ = {**os.environ, **SECRETS, "PYTHONPATH": f"{ROOT / 'daemon'}:{ROOT}", **(env or {})}
    return subprocess.Popen(daemon_argv(config, user), cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_daemon(dir_: Path, script: str, user: str, **kw: Any) -> tuple[dict[str, Any], str]:
    """Run one experiment in a stand-in daemon; (its outcome, the run's log). The daemon must exit 0."""
    with reaped(start_daemon(dir_, script, user, **kw)) as proc:  # killed if it outlives the timeout
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["uid"] == (0 if user == "root" else NOBODY)
    return outcome, (dir_ / "run" / "run.log").read_text(errors="replace")

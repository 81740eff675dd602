"""Hostile suite, "the daemon's /proc/<pid>/environ and the credentials folder": secrets stay in the daemon.

The daemon runs without ``CAP_SYS_PTRACE``, like the shipped unit's non-root user; the attacker is
another process of the same user, as an unsandboxed run would be. Under root the tests become
``nobody``, or, when ``nobody`` cannot execute this interpreter (a Python under ``/root``), stay uid 0
with every capability dropped: the kernel's check is the same (same uid, no ``CAP_SYS_PTRACE``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch.ops.privacy import helper_env, take_from_environ
from tests.conftest import GIT_ENV, make_repo
from tests.subprocs import terminated

KEY = "sk-ant-secrets-test-0123456789abcdef"
OTHER = {"OPENAI_API_KEY": "sk-openai-secrets-0123456789", "GITHUB_TOKEN": "ghp_secrets0123456789"}
DAEMON_PATH = str(Path(__file__).resolve().parents[2] / "daemon")

# Stands in for the daemon: the start-up call, then what the daemon itself needs from /proc.
PROTECTED = """
import json, os, subprocess, sys, time
from pathlib import Path
from autoresearch.ops.privacy import protect_daemon, take_from_environ
protected = sys.argv[1] == "protect"
if protected:
    assert protect_daemon()
    take_from_environ(("ANTHROPIC_API_KEY",))
child = subprocess.Popen(["sleep", "60"], env={"CHILD_MARK": "1"})
time.sleep(0.2)
own = {
    "self_environ": os.access("/proc/self/environ", os.R_OK),
    "self_fds": len(os.listdir("/proc/self/fd")) > 0,
    "self_status": "Name:" in Path("/proc/self/status").read_text(),
    "child_environ": b"CHILD_MARK=1" in Path(f"/proc/{child.pid}/environ").read_bytes(),
}
print(json.dumps(own), flush=True)
time.sleep(60)
"""


@functools.cache
def _daemon_user() -> tuple[list[str], int | None]:
    """(command prefix, uid to chown the repo to) for the daemon's and the attacker's processes."""
    if os.geteuid() != 0:
        return [], None
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = [*nobody, sys.executable, "-c", "import autoresearch.ops.privacy"]
    if subprocess.run(probe, env={"PYTHONPATH": DAEMON_PATH}, capture_output=True, check=False).returncode == 0:
        return nobody, 65534
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"], None


def daemon_argv(*argv: str) -> list[str]:
    return [*_daemon_user()[0], *argv]


def reader(pid: int, what: str = "environ") -> subprocess.CompletedProcess[str]:
    """Another process of the daemon's user reading the daemon's /proc/<pid>/<what>."""
    code = f"import sys; sys.stdout.write(open('/proc/{pid}/{what}', 'rb').read().decode('latin-1'))"
    return subprocess.run(daemon_argv(sys.executable, "-c", code), capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ["PATH"]})  # fmt: skip


@pytest.fixture
def daemon_like() -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(mode: str) -> tuple[subprocess.Popen[str], dict[str, bool]]:
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": DAEMON_PATH, "ANTHROPIC_API_KEY": KEY, **OTHER}
        proc = subprocess.Popen(daemon_argv(sys.executable, "-c", PROTECTED, mode), env=env,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        procs.append(proc)
        assert proc.stdout is not None
        return proc, json.loads(proc.stdout.readline())

    yield start
    for proc in procs:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_same_user_reads_an_unprotected_daemon(daemon_like: Any) -> None:
    """The control: without protection the attack works."""
    proc, _ = daemon_like("plain")
    done = reader(proc.pid)
    assert done.returncode == 0 and KEY in done.stdout and OTHER["GITHUB_TOKEN"] in done.stdout


def test_same_user_cannot_read_a_protected_daemon(daemon_like: Any) -> None:
    proc, own = daemon_like("protect")
    for what in ("environ", "mem", "maps"):
        done = reader(proc.pid, what)
        assert done.returncode != 0 and "PermissionError" in done.stderr, (what, done.stdout[:200])
    # Its own features still work: /proc/self, and the /proc of its children (dumpable again after exec).
    # A non-dumpable process's /proc files belong to root (mode 0400 for environ), so as nobody it cannot
    # open its own environ either; the daemon never reads it (the key is blanked in memory, /proc/self/stat
    # gives the block's address).
    as_root = os.geteuid() == 0 and _daemon_user()[1] is None
    assert own == {"self_environ": as_root, "self_fds": True, "self_status": True, "child_environ": True}


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may read a non-dumpable process's environ")
def test_the_taken_key_is_blanked_even_for_root(daemon_like: Any) -> None:
    proc, _ = daemon_like("protect")
    environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    assert KEY.encode() not in environ and OTHER["GITHUB_TOKEN"].encode() in environ


def test_take_from_environ_returns_and_removes(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"A_TOKEN": "t", "EMPTY_KEY": "", "KEEP": "k"}
    assert take_from_environ(("A_TOKEN", "EMPTY_KEY", "MISSING"), env) == {"A_TOKEN": "t"}
    assert env == {"KEEP": "k"}


def test_helper_env_is_an_allow_list() -> None:
    daemon_env = {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "ANTHROPIC_API_KEY": KEY,
                  "AWS_SECRET_ACCESS_KEY": "a", "CREDENTIALS_DIRECTORY": "/run/credentials/x",
                  "GIT_DIR": "/elsewhere", "GIT_CONFIG_COUNT": "1", "DB_PASSWORD": "p", **OTHER}  # fmt: skip
    assert helper_env({"GIT_PAGER": "cat"}, daemon_env) == {
        "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "GIT_PAGER": "cat",
    }  # fmt: skip


SLOW_TRAIN = "import os, time\nLR = 0.5\nprint('pid', os.getpid(), flush=True)\ntime.sleep(60)\nprint('val_bpb: 1.0')\n"


@pytest.fixture
def user_repo() -> Iterator[Path]:
    """A research repo the daemon's (non-root) user owns; /tmp, since pytest's tmp_path is root-only."""
    top = Path(tempfile.mkdtemp(prefix="autoresearch-secrets-"))
    top.chmod(0o755)
    repo = make_repo(top / "research", train=SLOW_TRAIN)
    uid = _daemon_user()[1]
    if uid is not None:
        for path in [top, *top.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)
    yield repo
    shutil.rmtree(top, ignore_errors=True)


def _daemon_cli(repo: Path, *args: str, extra: dict[str, str]) -> subprocess.Popen[str]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": DAEMON_PATH, "HOME": str(repo.parent), **GIT_ENV, **extra}
    return subprocess.Popen(daemon_argv(sys.executable, "-m", "autoresearch", *args), cwd=repo, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_a_run_cannot_read_the_daemon_or_inherit_its_key(user_repo: Path) -> None:
    """``autoresearch run --agent anthropic`` as a non-root user, a run in progress: its key is out of reach."""
    repo = user_repo
    # The unsandboxed process runner: the run is a host process whose PID it prints (root without capabilities,
    # the fallback user here, cannot map uids for bwrap; the sandboxed runner's own hostile suite covers bwrap).
    unsandboxed = {"AUTORESEARCH_PROCESS__SANDBOX": "none"}
    init = _daemon_cli(repo, "init", str(repo), "--tag", "s", "--runner", "process", "--budget", "60",
                       extra=unsandboxed)
    assert init.wait(timeout=120) == 0, init.communicate()
    secrets = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": "http://127.0.0.1:9", **OTHER, **unsandboxed}
    daemon = _daemon_cli(repo, "run", str(repo), "--agent", "anthropic", extra=secrets)
    try:
        log = repo / ".git/autoresearch/runs/0/run.log"
        deadline = time.monotonic() + 60
        while not (log.exists() and "pid" in log.read_text()) and time.monotonic() < deadline:
            assert daemon.poll() is None, daemon.communicate()
            time.sleep(0.1)
        run_pid = int(log.read_text().split()[1])
        done = reader(daemon.pid)
        assert done.returncode != 0 and "PermissionError" in done.stderr and KEY not in done.stdout
        run_env = reader(run_pid)  # the run is the attacker's process: it may read its own environment
        assert run_env.returncode == 0 and "AUTORESEARCH_TIME_BUDGET" in run_env.stdout
        assert KEY not in run_env.stdout
        if os.geteuid() == 0:
            assert KEY.encode() not in Path(f"/proc/{daemon.pid}/environ").read_bytes()
    finally:
        out, err = terminated(daemon)
    assert daemon.returncode == 0, err
    assert KEY not in out + err

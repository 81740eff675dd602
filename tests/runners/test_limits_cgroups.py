"""Per-run cgroups for real (issue 18 item 6), inside a container with its own cgroup namespace: the test
host's cgroups belong to its supervisor and are never written.

Each case is a fresh container from an empty image with the host's /usr, /etc, the interpreter and this
checkout bound read-only; it gets CAP_SYS_ADMIN to mount its own (namespaced) cgroup hierarchies
read-write: v1 where the host runs v1 (memory, pids, cpuset), v2 where it runs v2 (the daemon then gets a
group of its own, as systemd's Delegate=yes gives it). The hostile harness, the container's only
process, runs one experiment there with the bubblewrap runner and ``process.cgroups`` = that version,
and reports the outcome and the run groups left behind.
Needs a Docker engine: skips without one, fails under AUTORESEARCH_REQUIRE_DOCKER=1 (CI).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runners.hostile import FORK_300, spawned

ROOT = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("AUTORESEARCH_REQUIRE_DOCKER") == "1"
Run = Callable[..., dict[str, Any]]

PREPARE_V1 = ("for c in memory pids cpuset; do umount /sys/fs/cgroup/$c && "
              "mount -t cgroup -o $c cgroup /sys/fs/cgroup/$c; done")
"""Docker mounts the namespaced hierarchies read-only: mount them again, read-write (still the container's own)."""
PREPARE_V2 = (
    "umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && cd /sys/fs/cgroup && "
    "mkdir init && echo $$ > init/cgroup.procs && echo '+memory +pids +cpuset' > cgroup.subtree_control && "
    "mkdir daemon && echo $$ > daemon/cgroup.procs && cd /"
)
"""v2: the namespace's root hands its controllers down (so it holds no process), and the stand-in daemon
starts in a group of its own, as a systemd unit with Delegate=yes does. The container's only process is
this shell (no ``docker exec`` ever joins the root later)."""
LOG_MARK = "=== run.log ==="


def _docker(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=180, **kw)


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (AUTORESEARCH_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


def _host_version() -> str:
    return "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1"


def _empty_image(tag: str) -> None:
    """An image holding only mount points and the merged-/usr links; everything else is bound from the host."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ("bin", "lib", "lib64", "sbin"):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, f"usr/{name}"
            tar.addfile(link)
        for name in ("usr", "etc", "tmp", "proc", "sys", "dev", "root", "run"):
            folder = tarfile.TarInfo(name)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
    subprocess.run(["docker", "import", "-", tag], input=buf.getvalue(), capture_output=True, check=True, timeout=60)


def _binds() -> list[str]:
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix)} | {ROOT}
    extra = sorted(str(r) for r in roots if not str(r).startswith("/usr/"))
    return [arg for path in ("/usr", "/etc", *extra) for arg in ("-v", f"{path}:{path}:ro")]


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    if shutil.which("docker") is None or _docker("info", check=False).returncode != 0:
        _unavailable("no Docker engine reachable")
    tag = f"autoresearch-limits-test:{uuid.uuid4().hex[:8]}"
    _empty_image(tag)
    try:
        yield tag
    finally:
        _docker("rmi", "-f", tag, check=False)


@pytest.fixture
def run(image: str) -> Run:
    """One experiment in a fresh container with its own cgroup namespace; the harness's outcome + the log."""
    version = _host_version()

    def go(script: str, budget: float = 30, pre: str = "true", **config: Any) -> dict[str, Any]:
        settings = {"cgroups": version, **config.pop("settings", {})}
        cfg = {"dir": "/tmp/run", "script": script, "budget": budget, "grace": 5, "repo_id": "limits",
               "settings": settings, **config}
        shell = (f"{PREPARE_V2 if version == 'v2' else PREPARE_V1} && {pre} && mkdir -p /tmp/run && "
                 f"cat > /tmp/run/config.json && cd {ROOT} && PYTHONPATH={ROOT / 'daemon'}:{ROOT} "
                 f"{sys.executable} -m tests.runners.hostile_harness /tmp/run/config.json && "
                 f"echo '{LOG_MARK}' && cat /tmp/run/run/run.log")
        name = f"ar-limits-{uuid.uuid4().hex[:8]}"
        # SYS_ADMIN to mount its own cgroups; systempaths=unconfined so bubblewrap can mount a /proc inside.
        unconfined = [a for o in ("seccomp", "apparmor", "systempaths") for a in ("--security-opt", f"{o}=unconfined")]
        try:
            done = _docker("run", "-i", "--rm", "--name", name, "--label", "autoresearch.test=limits",
                           "--cgroupns=private", "--cap-add", "SYS_ADMIN", *unconfined, "--tmpfs", "/tmp:exec",
                           *_binds(), image, "sh", "-c", shell, input=json.dumps(cfg), check=False)
        finally:
            _docker("rm", "-f", name, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        head, _, log = done.stdout.partition(LOG_MARK)
        out: dict[str, Any] = json.loads(head.strip().splitlines()[-1])
        out["log"] = log
        return out

    return go


def test_a_run_over_its_memory_limit_is_oom_and_its_group_goes(run: Run) -> None:
    script = "b = b'x' * (1536 << 20)\nprint('allocated', len(b))\nprint('val_bpb: 1.0')\n"
    out = run(script, settings={"memory": "256m"})
    assert out["cause"] == "oom", out
    assert "allocated" not in out["log"]
    assert out["notice"]["not_enforced"] == [] and out["notice"]["enforcer"].startswith("cgroup")
    assert out["groups_left"] == []


def test_a_run_within_its_memory_limit_is_ok_and_measured(run: Run) -> None:
    out = run("b = b'x' * (64 << 20)\nprint('val_bpb: 1.0')\n", settings={"memory": "512m"})
    assert out["cause"] == "ok", out
    assert out["peak_memory_gb"] is not None and 0.06 < out["peak_memory_gb"] < 0.5  # the run's own, from its group


def test_300_processes_fail_at_the_pids_limit(run: Run) -> None:
    out = run(FORK_300, settings={"pids_limit": 64})
    started, failed = spawned(out["log"])
    assert started < 64 and failed == 300 - started, out["log"]
    assert out["groups_left"] == []  # the sleeps were killed with the group


def test_a_dead_daemons_run_group_is_swept(run: Run) -> None:
    """A group left by a daemon killed mid-run (same repo, same lane) goes when the next one reaps."""
    tag = hashlib.sha256(b"limits").hexdigest()[:8]
    v1 = [f"/sys/fs/cgroup/{c}" for c in ("memory", "pids")]
    roots = ["/sys/fs/cgroup/daemon"] if _host_version() == "v2" else v1
    left = [f"{r}/ar-run-{tag}-0-train-9-dead" for r in roots]
    other = [f"{r}/ar-run-0000aaaa-0-train-9-other" for r in roots]  # another repo's: not ours to remove
    out = run("print('val_bpb: 1.0')\n", pre=f"mkdir {' '.join(left + other)}")
    assert out["cause"] == "ok" and out["groups_left"] == sorted(other), out


def test_unsandboxed_a_setsid_child_dies_with_the_runs_group(run: Run) -> None:
    """process.sandbox = "none": the process group lets a setsid child escape, the run's cgroup does not."""
    script = "import subprocess\nsubprocess.Popen(['setsid', 'sleep', '300'])\nprint('leader done', flush=True)\n"
    out = run(script, mode="none")
    assert out["cause"] == "ok" and "leader done" in out["log"]
    assert out["groups_left"] == []  # removed, so emptied: the escaped sleep was killed with it


def test_the_lanes_cpuset_pins_the_run(run: Run) -> None:
    script = "import os\nprint('cpus', sorted(os.sched_getaffinity(0)))\n"
    out = run(script, cpus=[0])
    assert out["cause"] == "ok" and "cpus [0]" in out["log"], out

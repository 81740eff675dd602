"""The hostile suite against the Docker runner (issue 10): what an LLM-written run tries at 3 a.m.

Each case must be contained, classified (ok, timeout, violation, exit:N) and leave nothing behind:
no container or volume (conftest's autouse check), no process on the host, no file of the run.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch.git.workspace import GitWorkspace
from autoresearch.runners.docker import DockerRunner
from tests.conftest import git

pytestmark = pytest.mark.docker
DAEMON_SRC = Path(__file__).resolve().parents[2] / "daemon"


def run(runner: Any, spec: Any) -> Any:
    return runner.run(spec, lambda _handle: None)


def probe(log: Path) -> dict[str, Any]:
    return dict(json.loads(log.read_text().split("PROBE ", 1)[1].splitlines()[0]))


def host_processes_with(marker: str) -> list[int]:
    """Host PIDs whose command line carries ``marker`` (what a run's processes are started with)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def assert_nothing_left(spec: Any, marker: str | None = None) -> None:
    assert not list(spec.log_path.parent.glob(".workspace-*")), "the run's private folder must be removed"
    assert not (spec.log_path.parent / "run-output").exists(), "an empty /output leaves no folder"
    if marker is not None:
        assert host_processes_with(marker) == [], "a process of the run outlived its container"


SOCKETS = r"""
import json, os, socket, stat
found = []
for root, dirs, files in os.walk("/"):
    if root in ("/proc", "/sys", "/dev", "/usr"):
        dirs[:] = []
        continue
    for name in files + dirs:
        path = os.path.join(root, name)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                found.append(path)
        except OSError:
            pass
tries = {}
for path in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        tries[path] = "connected"
    except OSError as e:
        tries[path] = type(e).__name__
for host in ("172.17.0.1", "127.0.0.1"):
    try:
        socket.create_connection((host, 2375), timeout=2)
        tries[host] = "connected"
    except OSError as e:
        tries[host] = type(e).__name__
print("PROBE " + json.dumps({"sockets": found, "tries": tries, "groups": os.getgroups(),
                             "docker_host": os.environ.get("DOCKER_HOST")}))
"""


def test_the_engine_socket_is_out_of_reach(make_runner, make_spec, workdir, repo_id):
    (workdir / "sockets.py").write_text(SOCKETS)
    host_env = {"DOCKER_HOST": "unix:///var/run/docker.sock", "PYTHONHASHSEED": "0"}
    runner = DockerRunner(make_runner().settings, repo_id=repo_id, instance="pytest", host_env=host_env)
    spec = make_spec("python3 sockets.py", env={"DOCKER_HOST": "unix:///var/run/docker.sock"})
    out = run(runner, spec)
    assert out.cause == "ok", spec.log_path.read_text()
    seen = probe(spec.log_path)
    assert seen["sockets"] == [] and seen["docker_host"] is None
    assert "connected" not in seen["tries"].values(), seen["tries"]
    docker_gid = grp.getgrnam("docker").gr_gid if "docker" in {g.gr_name for g in grp.getgrall()} else None
    assert docker_gid not in seen["groups"]
    assert_nothing_left(spec)


SECRETS = r"""
import json, os, sys
secrets = json.load(open("secrets.json"))  # what to look for; not on a command line, which /proc shows
leaks = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            try:
                data = open(f"/proc/{pid}/{name}", "rb").read().decode(errors="replace")
            except OSError:
                continue
            leaks += [f"{pid}/{name}" for s in secrets if s in data]
print("PROBE " + json.dumps({
    "leaks": leaks,
    "env": sorted(os.environ),
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "paths": {p: os.path.exists(p) for p in sys.argv[1].split(",")},
}))
"""


def test_no_secret_of_the_daemon_reaches_a_run(make_runner, make_spec, workdir, repo_id, tmp_path):
    """The daemon's environment, /proc/<daemon>/environ and the credentials folder stay out."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    secret = {"ANTHROPIC_API_KEY": f"sk-ant-{uuid.uuid4().hex}", "OPENAI_API_KEY": f"sk-{uuid.uuid4().hex}",
              "GITHUB_TOKEN": f"ghp_{uuid.uuid4().hex}"}  # fmt: skip
    (creds / "anthropic_api_key").write_text(secret["ANTHROPIC_API_KEY"])
    host_env = {**secret, "CREDENTIALS_DIRECTORY": str(creds), "PYTHONHASHSEED": "0"}
    runner = DockerRunner(make_runner().settings, repo_id=repo_id, instance="pytest", host_env=host_env)
    (workdir / "secrets.py").write_text(SECRETS)
    paths = [str(creds), "/run/credentials", "/var/run/docker.sock", str(tmp_path)]
    (workdir / "secrets.json").write_text(json.dumps(list(secret.values())))
    spec = make_spec(f"python3 secrets.py {','.join(paths)}", env=host_env)
    out = run(runner, spec)
    assert out.cause == "ok", spec.log_path.read_text()
    seen = probe(spec.log_path)
    assert seen["leaks"] == []
    assert not {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GITHUB_TOKEN", "CREDENTIALS_DIRECTORY"} & set(seen["env"])
    assert not any(seen["paths"].values()), seen["paths"]
    assert seen["pids"][0] == 1 and len(seen["pids"]) <= 3, "only the container's own processes are visible"
    assert_nothing_left(spec)


SHADOW_TRAIN = """import os
import prepare
print("val_bpb:", prepare.score(), flush=True)
print("PROBE", sorted(os.listdir(".")), flush=True)
try:
    os.makedirs("prepare", exist_ok=True)
    open("prepare/__init__.py", "w").write("def score():\\n    return 0.5\\n")
    print("planted", flush=True)
except OSError as e:
    print("plant failed:", e, flush=True)
"""


def test_an_untracked_module_cannot_shadow_a_read_only_one(make_runner, make_spec, tmp_path):
    repo = tmp_path / "research"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text(SHADOW_TRAIN)
    (repo / "prepare.py").write_text("def score():\n    return 1.0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "research repo")
    # What an earlier run or a command agent could leave in the checkout, and what the user keeps there.
    (repo / "prepare").mkdir()
    (repo / "prepare" / "__init__.py").write_text("def score():\n    return 0.5\n")
    for name in (".env", "notes.md", "results.tsv"):
        (repo / name).write_text("ANTHROPIC_API_KEY=sk-ant-x\n")
    ws = GitWorkspace.open(repo)
    runner = make_runner()
    for n in (1, 2):  # the second run must not see what the first one tried to plant
        snapshot = tmp_path / "snapshots" / str(n)
        ws.export(ws.head(), snapshot)
        spec = make_spec("python3 train.py", n=n, workdir=repo, snapshot=snapshot)
        out = run(runner, spec)
        log = spec.log_path.read_text()
        assert out.cause == "ok", log
        assert "val_bpb: 1.0" in log and "0.5" not in log
        assert "plant failed" in log and "Read-only file system" in log
        listed = log.split("PROBE ", 1)[1].splitlines()[0]
        assert listed == str(["prepare.py", "train.py"]), "only committed files enter a run"
        assert_nothing_left(spec)
        shutil.rmtree(snapshot)


SETSID_HOLDER = """import os, sys, time
if os.fork() == 0:
    os.setsid()  # its own session: out of reach of a process-group kill
    time.sleep(2)
    print("val_bpb: 0.1", flush=True)  # the metric, printed by a child after its leader is gone
    time.sleep(1000)
print("leader exits", flush=True)
"""


def test_a_setsid_child_holding_stdout_ends_with_its_container(make_runner, make_spec, workdir):
    marker = f"holder-{uuid.uuid4().hex[:8]}"
    (workdir / "holder.py").write_text(SETSID_HOLDER)
    spec = make_spec(f"python3 holder.py {marker}", budget=20, grace=1)
    out = run(make_runner(), spec)
    log = spec.log_path.read_text()
    # A child that kept the output open would hold the run to its deadline: a timeout, not ok.
    assert out.cause == "ok", log
    assert "leader exits" in log and "val_bpb" not in log
    assert_nothing_left(spec, marker)


ORPHAN = """import os, sys, time
if os.fork() == 0:
    if os.fork() == 0:  # the grandchild: re-parented, in a session of its own, with an empty environment
        os.setsid()
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(1000)", sys.argv[1]], {})
    os._exit(0)
time.sleep(0.5)
print("leader exits", flush=True)
"""


def test_a_double_forked_orphan_with_a_cleared_environment_dies_with_the_container(make_runner, make_spec, workdir):
    marker = f"orphan-{uuid.uuid4().hex[:8]}"
    (workdir / "orphan.py").write_text(ORPHAN)
    spec = make_spec(f"python3 orphan.py {marker}", budget=20, grace=1)
    out = run(make_runner(), spec)
    assert out.cause == "ok", spec.log_path.read_text()
    assert_nothing_left(spec, marker)


LATE_METRIC = """import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.fork() == 0:
    os.setsid()
    time.sleep(6)  # past budget + grace + stop timeout
    print("val_bpb: 0.1", flush=True)
    time.sleep(1000)
while True:
    time.sleep(1)
"""


def test_a_metric_printed_after_the_deadline_is_never_read(make_runner, make_spec, workdir):
    marker = f"late-{uuid.uuid4().hex[:8]}"
    (workdir / "late.py").write_text(LATE_METRIC)
    spec = make_spec(f"python3 late.py {marker}", budget=1, grace=1)
    out = run(make_runner(stop_timeout_s=1), spec)
    assert out.cause == "timeout"
    assert "val_bpb" not in spec.log_path.read_text()
    assert_nothing_left(spec, marker)


FILLER = """import os
os.makedirs("/output/d")
os.chmod("/output/d", 0o700)  # the daemon's uid cannot look inside, nor delete
n = 0
try:
    while n < 640:
        with open(f"/output/d/{n}", "wb") as f:
            f.write(bytes(1 << 20))
        n += 1
except OSError as e:
    print("stopped:", e, flush=True)
os.chmod("/output/d", 0)
print("wrote MiB", n, flush=True)
print("val_bpb: 0.9", flush=True)
"""

NONROOT_DAEMON = """
import json, os, shutil, sys
from pathlib import Path
from autoresearch.ops.config import DockerSettings
from autoresearch.runners.base import RunSpec
from autoresearch.runners.docker import DockerRunner
work, image, repo_id = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
settings = DockerSettings(image=image, write_cap="32m", memory="512m", stop_timeout_s=1)
runner = DockerRunner(settings, repo_id=repo_id, instance="nonroot")
spec = RunSpec(n=1, kind="train", command="python3 fill.py", workdir=work / "snap", budget=60, grace=5, env={},
               log_path=work / "runs" / "1" / "run.log", log_cap_bytes=1 << 16, target="train.py",
               snapshot=work / "snap")
out = runner.run(spec, lambda handle: None)
left = sorted(str(p.relative_to(work / "runs" / "1")) for p in (work / "runs" / "1").rglob("*"))
log = spec.log_path.read_text()
shutil.rmtree(work / "runs")  # the daemon can always delete what a run left
print(json.dumps({"uid": os.getuid(), "groups": os.getgroups(), "cause": out.cause, "detail": out.detail,
                  "left": left, "log": log}))
"""

# The interpreter may sit under a folder the new user cannot enter (pyenv under /root, mode 0700): in a
# mount namespace of its own, /root becomes an empty tmpfs with only the interpreter's folder bound back.
AS_USER = """set -e
if [ -n "$HIDDEN" ]; then
  stage=$(mktemp -d)
  mount --bind "$HIDDEN" "$stage"
  mount -t tmpfs -o mode=0755 tmpfs /root
  mkdir -p "$HIDDEN"
  mount --move "$stage" "$HIDDEN"
fi
exec setpriv --reuid "$RUN_UID" --regid "$RUN_GID" --init-groups "$@"
"""


@pytest.fixture
def daemon_user() -> Iterator[tuple[int, int]]:
    """A fresh non-root user in the `docker` group, as the shipped unit runs the daemon; removed after."""
    if os.geteuid() != 0:
        pytest.skip("creating the non-root daemon user needs root")
    if not all(shutil.which(t) for t in ("useradd", "userdel", "setpriv", "unshare")):
        pytest.skip("needs useradd, userdel, setpriv and unshare")
    name = f"ar-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group", "--groups", "docker",
                    "--shell", "/usr/sbin/nologin", name], check=True)  # fmt: skip
    try:
        import pwd

        entry = pwd.getpwnam(name)
        yield entry.pw_uid, entry.pw_gid
    finally:
        subprocess.run(["userdel", name], check=True)


def test_write_cap_bypass_through_a_0700_folder_under_a_non_root_daemon(daemon_user, workdir, repo_id, image):
    uid, gid = daemon_user
    work = Path(tempfile.mkdtemp(prefix="ar-nonroot-", dir="/var/tmp"))
    try:
        shutil.copytree(workdir, work / "snap", ignore=shutil.ignore_patterns(".git"))
        (work / "snap" / "fill.py").write_text(FILLER)
        for path in (work, *work.rglob("*")):
            os.chown(path, uid, gid)
        prefix = Path(sys.base_prefix)
        hidden = str(Path("/root", prefix.relative_to("/root").parts[0])) if prefix.is_relative_to("/root") else ""
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(DAEMON_SRC), "HOME": str(work), "HIDDEN": hidden,
               "RUN_UID": str(uid), "RUN_GID": str(gid), **{k: v for k, v in os.environ.items() if k == "DOCKER_HOST"}}
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", AS_USER, "sh",
                sys.executable, "-c", NONROOT_DAEMON, str(work), image, repo_id]  # fmt: skip
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["uid"] == uid and grp.getgrnam("docker").gr_gid in result["groups"]
        assert result["cause"] == "violation" and "write cap" in result["detail"], result
        assert "No space left on device" in result["log"], "the kernel bounded /output, not a poll"
        assert result["left"] == ["run.log"], "nothing of /output reached the host's disk"
        assert not (work / "runs").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)

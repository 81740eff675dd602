"""DockerRunner against a real engine: real training, hostile scripts, crashes, engine faults.

Each hostile script must end as a classified outcome, with the runner carrying on and nothing left
behind (the autouse fixture in conftest.py checks for labelled leftovers after every test).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from autoresearch.errors import EngineUnavailable, GpuError, ImageMissing
from autoresearch.runners.gpu import FakeGpu, GpuDevice
from tests.runners.conftest import snapshot_of

pytestmark = pytest.mark.docker
EXAMPLE = Path(__file__).resolve().parents[2] / "daemon" / "autoresearch" / "example"

PROBE = r"""
import json, os, socket
def attempt(f):
    try:
        f()
        return "ok"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
print("PROBE " + json.dumps({
    "uid": os.getuid(),
    "workspace": sorted(os.listdir("/workspace")),
    "env": dict(os.environ),
    "cap_eff": status["CapEff"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "write_root": attempt(lambda: open("/etc/evil", "w")),
    "write_workspace": attempt(lambda: open("/workspace/new.txt", "w")),
    "write_readonly": attempt(lambda: open("prepare.py", "a").write("evil")),
    "write_cache": attempt(lambda: open("/cache/evil", "w")),
    "write_tmp": attempt(lambda: open("/tmp/x", "w").write("x")),
    "write_output": attempt(lambda: open("/output/result.txt", "w").write("42")),
    "docker_sock": os.path.exists("/var/run/docker.sock") or os.path.exists("/run/docker.sock"),
    "net": attempt(lambda: socket.create_connection(("1.1.1.1", 443), timeout=3)),
    "ifaces": sorted(os.listdir("/sys/class/net")),
}))
"""


def script(workdir: Path, name: str, text: str) -> str:
    """Write a hostile script into the tree; the command runs it (no shell quoting to get wrong)."""
    (workdir / name).write_text(text)
    return f"python3 {name}"


def run(runner: Any, spec: Any, handles: list[dict[str, Any]] | None = None) -> Any:
    return runner.run(spec, (handles if handles is not None else []).append)


def test_sandbox_is_hardened(make_runner, make_spec, workdir, docker_client, repo_id):
    (workdir / "probe.py").write_text(PROBE)
    labels: dict[str, str] = {}

    def on_started(handle: dict[str, Any]) -> None:
        assert handle["kind"] == "docker"
        labels.update(docker_client.containers.get(handle["container_id"]).labels)

    spec = make_spec("python3 probe.py")
    out = make_runner().run(spec, on_started)
    assert out.cause == "ok", spec.log_path.read_text()
    probe = json.loads(spec.log_path.read_text().split("PROBE ", 1)[1])
    assert labels["autoresearch.repo"] == repo_id and labels["autoresearch.experiment"] == str(spec.n)
    assert labels["autoresearch.instance"] == "pytest"
    assert probe["uid"] == 65534
    assert ".git" not in probe["workspace"] and "train.py" in probe["workspace"]
    assert "ANTHROPIC_API_KEY" not in probe["env"]
    assert probe["env"]["AUTORESEARCH_CACHE"] == "/cache" and probe["env"]["PYTHONHASHSEED"] == "0"
    assert probe["cap_eff"] == "0000000000000000" and probe["no_new_privs"] == "1"
    for key in ("write_root", "write_workspace", "write_readonly", "write_cache"):
        assert "Read-only file system" in probe[key] or "Permission denied" in probe[key], key
    assert probe["write_tmp"] == "ok" and probe["write_output"] == "ok"
    assert (spec.log_path.parent / "run-output" / "result.txt").read_text() == "42"
    assert not probe["docker_sock"]
    assert probe["net"] != "ok" and probe["ifaces"] == ["lo"]
    assert (workdir / "prepare.py").read_text() == "print('prepare')\n"
    assert not list(spec.log_path.parent.glob(".workspace-*")), "the run's copy of the tree must be removed"


@pytest.mark.slow
def test_example_trains_in_a_container(make_runner, make_spec, workdir, tmp_path):
    for name in ("train.py", "prepare.py", "safe_export.py"):  # train.py saves its model with safe_export
        shutil.copy(EXAMPLE / name, workdir / name)
    runner = make_runner(memory="2g")
    prep = make_spec("python3 prepare.py", budget=120, kind="prepare")
    out = run(runner, prep)
    assert out.cause == "ok", prep.log_path.read_text()
    assert (tmp_path / "cache" / "meta.json").exists()
    spec = make_spec("python3 train.py", budget=3, grace=60)
    out = run(runner, spec)
    text = spec.log_path.read_text()
    assert out.cause == "ok", text
    assert any(line.startswith("val_bpb:") for line in text.splitlines()), text
    assert out.peak_memory_gb is not None and 0.01 < out.peak_memory_gb < 2


def test_the_image_runs_python_train_py(make_runner, make_spec, workdir):
    """`python` as well as `python3`, as on every CUDA PyTorch image (karpathy's `python train.py`)."""
    (workdir / "train.py").write_text("import sys, torch\nprint(sys.executable, torch.__version__, 'val_bpb: 1.5')\n")
    spec = make_spec("python train.py")
    out = run(make_runner(), spec)
    assert out.cause == "ok", spec.log_path.read_text()
    assert "val_bpb: 1.5" in spec.log_path.read_text()


def test_budget_ignorer_is_killed_at_budget_plus_grace(make_runner, make_spec, workdir):
    spec = make_spec(script(workdir, "slow.py", "import time\ntime.sleep(1000)\n"), budget=1, grace=0.5)
    out = run(make_runner(), spec)
    assert out.cause == "timeout"
    assert 1.5 <= out.wall_s < 4.5
    assert out.kill_latency_s is not None and out.kill_latency_s < 1.5  # SIGTERM works: no kill needed


def test_sigterm_ignorer_is_killed(make_runner, make_spec, workdir):
    deaf = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('deaf', flush=True)\n"
    runner = make_runner(stop_timeout_s=1)
    for command in (
        script(workdir, "deaf.py", deaf + "while True: time.sleep(0.1)\n"),
        "trap '' TERM; while :; do sleep 1; done",
    ):
        # Budget to spare: the handler must be installed before the stop comes, even on a loaded machine.
        spec = make_spec(command, budget=3, grace=0.5)
        out = run(runner, spec)
        assert out.cause == "timeout" and out.exit_code == 137, command
        assert out.kill_latency_s is not None and 0.8 <= out.kill_latency_s < 4


def test_fork_bomb_is_contained_and_the_host_stays_responsive(make_runner, make_spec, workdir):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    runner = make_runner(pids_limit=32, cpus=1.0)
    spec = make_spec(script(workdir, "bomb.py", bomb), budget=2, grace=0.5)
    lags: list[float] = []
    done = threading.Event()

    def probe_host() -> None:
        while not done.is_set():
            t0 = time.monotonic()
            subprocess.run(["true"], check=True)
            lags.append(time.monotonic() - t0)
            time.sleep(0.2)

    prober = threading.Thread(target=probe_host)
    prober.start()
    try:
        out = run(runner, spec)
    finally:
        done.set()
        prober.join()
    assert out.cause == "timeout"
    assert lags and max(lags) < 2.0, lags
    assert run(runner, make_spec("true")).cause == "ok", "the runner carries on"


def test_memory_hog_is_oom(make_runner, make_spec, workdir):
    hog = "x = []\nwhile True: x.append(bytearray(8 << 20))\n"
    out = run(make_runner(memory="128m"), make_spec(script(workdir, "hog.py", hog)))
    assert out.cause == "oom"
    assert out.peak_memory_gb is not None and out.peak_memory_gb <= 0.13


def test_writing_prepare_py_fails(make_runner, make_spec, workdir):
    spec = make_spec(script(workdir, "evil.py", "open('prepare.py', 'w').write('evil')\n"))
    out = run(make_runner(), spec)
    assert out.cause == "exit:1"
    assert "Read-only file system" in spec.log_path.read_text() or "Permission denied" in spec.log_path.read_text()
    assert (workdir / "prepare.py").read_text() == "print('prepare')\n"


def test_rewriting_the_target_is_a_violation(make_runner, make_spec, workdir):
    spec = make_spec("echo 'print(1)' >> train.py && cat train.py")
    out = run(make_runner(), spec)
    assert out.cause == "violation" and "train.py" in out.detail
    assert (workdir / "train.py").read_text() == "print('train')\n", "the committed version stands"


def test_network_call_fails(make_runner, make_spec, workdir):
    spec = make_spec(
        script(workdir, "net.py", "import urllib.request\nurllib.request.urlopen('https://pypi.org', timeout=5)\n")
    )
    out = run(make_runner(), spec)
    assert out.cause == "exit:1"
    assert "URLError" in spec.log_path.read_text()


def test_disk_filler_is_stopped_by_tmpfs_and_log_cap(make_runner, make_spec, workdir):
    filler = (
        "import sys\ntry:\n    with open('/tmp/fill', 'wb') as f:\n        while True: f.write(bytes(1 << 20))\n"
        "except OSError as e:\n    print('tmp full:', e, flush=True)\nwhile True: sys.stdout.write('y' * 65536)\n"
    )
    cap = 256 * 1024
    # Seconds to spare: on a loaded machine the container and interpreter start slowly.
    spec = make_spec(script(workdir, "fill.py", filler), budget=5, grace=1, log_cap_bytes=cap)
    out = run(make_runner(tmpfs_size="16m"), spec)
    assert out.cause == "timeout" and out.log_truncated
    assert spec.log_path.stat().st_size <= cap + 100
    assert "No space left on device" in spec.log_path.read_text()


def test_output_filler_hits_the_write_cap(make_runner, make_spec, workdir):
    filler = "i = 0\nwhile True:\n    open(f'/output/{i}', 'wb').write(bytes(4 << 20))\n    i += 1\n"
    spec = make_spec(script(workdir, "outfill.py", filler), budget=20)
    out = run(make_runner(write_cap="32m"), spec)
    assert out.cause == "violation" and "write cap" in out.detail
    assert out.wall_s < 10
    assert not (spec.log_path.parent / "run-output").exists(), "the junk is discarded"


def test_cancel_interrupts(make_runner, make_spec):
    spec = make_spec("sleep 100", budget=100)
    threading.Timer(1.0, spec.cancel.set).start()
    out = run(make_runner(), spec)
    assert out.cause == "interrupted" and out.kill_latency_s is not None
    assert out.wall_s < 5


def test_prepare_may_write_the_cache(make_runner, make_spec, tmp_path):
    runner = make_runner()
    spec = make_spec("echo data > $AUTORESEARCH_CACHE/data.txt", kind="prepare")
    assert run(runner, spec).cause == "ok", spec.log_path.read_text()
    assert (tmp_path / "cache" / "data.txt").read_text() == "data\n"
    spec = make_spec("cat $AUTORESEARCH_CACHE/data.txt && ! touch $AUTORESEARCH_CACHE/x")
    assert run(runner, spec).cause == "ok", spec.log_path.read_text()


CHILD = """
import json, sys
from pathlib import Path
from autoresearch.ops.config import DockerSettings
from autoresearch.runners.base import RunSpec
from autoresearch.runners.docker import DockerRunner
out, image, repo_id, snapshot = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4])
runner = DockerRunner(DockerSettings(image=image), repo_id=repo_id, instance="doomed")
spec = RunSpec(n=7, kind="train", command="sleep 300", workdir=snapshot, budget=300, grace=0, env={},
               log_path=out.parent / "runs" / "7" / "run.log", log_cap_bytes=1 << 16, target="train.py",
               snapshot=snapshot)
runner.run(spec, lambda handle: out.write_text(json.dumps(handle)))
"""


def _start_and_kill(tmp_path: Path, workdir: Path, repo_id: str, image: str, name: str) -> dict[str, Any]:
    handle_file = tmp_path / f"{name}.json"
    snapshot = snapshot_of(workdir, tmp_path / "snapshots" / name)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(handle_file), image, repo_id, str(snapshot)])
    try:
        deadline = time.monotonic() + 60
        while not handle_file.exists() or not handle_file.read_text():
            assert child.poll() is None, "the child daemon died early"
            assert time.monotonic() < deadline, "the child never started its container"
            time.sleep(0.1)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    return dict(json.loads(handle_file.read_text()))


def test_kill_9_then_reap_by_handle(make_runner, workdir, tmp_path, repo_id, docker_client, image):
    handle = _start_and_kill(tmp_path, workdir, repo_id, image, "a")
    assert docker_client.containers.get(handle["container_id"]).status == "running", "the orphan outlives its daemon"
    fresh = make_runner()
    assert fresh.reap(handle) is True
    assert fresh.reap(handle) is False
    assert not Path(handle["workspace"]).exists()


def test_kill_9_then_reap_orphans_at_startup(make_runner, workdir, tmp_path, repo_id, image):
    _start_and_kill(tmp_path, workdir, repo_id, image, "b")
    assert make_runner().reap_orphans() == 1
    assert make_runner().reap_orphans() == 0


def test_engine_lost_mid_run_is_cause_docker_then_recovers(make_runner, make_spec, engine_proxy):
    runner = make_runner(host=f"unix://{engine_proxy.path}")
    spec = make_spec("sleep 60", budget=60)
    started = threading.Event()
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(out=runner.run(spec, lambda _h: started.set())))
    worker.start()
    assert started.wait(30)
    time.sleep(0.5)
    engine_proxy.stop()
    worker.join(30)
    assert result["out"].cause == "docker", result
    with pytest.raises(EngineUnavailable, match="is dockerd running"):
        runner.check()
    engine_proxy.start()
    runner.check()  # the engine is back: the container it could not remove is removed now
    assert run(runner, make_spec("true")).cause == "ok"


def test_image_missing_names_the_build_command(make_runner, make_spec):
    runner = make_runner(image="autoresearch-no-such-image:nope")
    with pytest.raises(ImageMissing, match=r"runner-image/build-local\.sh"):
        runner.check()
    with pytest.raises(ImageMissing):
        run(runner, make_spec("true"))


def test_gpu_selection_is_checked_before_a_run(make_runner, docker_client):
    from autoresearch.runners.docker import DockerRunner

    gpu = GpuDevice(index=0, uuid="GPU-0", name="Fake", total_mb=80_000, free_mb=100)
    base = make_runner()
    for gpus, probe, message in (
        (["1"], FakeGpu([gpu]), "not found"),
        ("all", FakeGpu([gpu]), "free"),
        ("all", FakeGpu([]), "reports none"),
    ):
        settings = base.settings.model_copy(update={"gpus": gpus})
        runner = DockerRunner(settings, repo_id=base.repo_id, instance="pytest", gpu_probe=probe)
        with pytest.raises(GpuError, match=message):
            runner.check()


@pytest.fixture
def busybox_image(docker_client: Any, repo_id: str, tmp_path: Path) -> Any:
    """A busybox-only image like the device recipe's gpu-base:local (removed afterwards)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    rootfs = tmp_path / "rootfs"
    for d in ("bin", "tmp", "etc", "usr", "proc", "sys", "dev"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy(busybox, rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    (rootfs / "lib").symlink_to("usr/lib")
    (rootfs / "lib64").symlink_to("usr/lib64")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/tmp:/bin/sh\n")
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    name = f"autoresearch-test-busybox:{repo_id}"
    docker_client.api.import_image_from_file(str(tar), repository=name.split(":")[0], tag=repo_id)
    yield name
    docker_client.images.remove(name, force=True)


def interpreter_mounts() -> list[str]:
    """What ``sys.executable`` needs inside a container: /usr, its base install and (from a venv) the venv.

    Nested paths are left out: the engine refuses two mounts at one place, and the outer one has them.
    """
    keep: list[str] = []
    for path in sorted({"/usr", sys.base_prefix, sys.prefix}):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in keep):
            keep.append(path)
    return keep


@pytest.mark.slow
def test_explicit_mode_busybox_with_the_hosts_python(make_runner, make_spec, busybox_image):
    """The device recipe's shape without a GPU: a busybox image, the host's /usr and Python mounted read-only."""
    runner = make_runner(image=busybox_image, gpu_mode="explicit", mounts=interpreter_mounts(), env={"PATH": "/bin"})
    command = f"{sys.executable} -c 'import os, torch; print(\"torch\", torch.__version__, os.getuid())'"
    spec = make_spec(command)
    out = run(runner, spec)
    assert out.cause == "ok", spec.log_path.read_text()
    assert "torch " in spec.log_path.read_text() and " 65534" in spec.log_path.read_text()


class LivePidGpu(FakeGpu):
    """A fake GPU on which every live process of the run holds 1 GiB."""

    def used_by(self, pids: set[int]) -> float:
        return 1024.0 * sum(Path(f"/proc/{pid}").exists() for pid in pids)


def test_gpu_run_measures_the_containers_processes(make_runner, make_spec, workdir):
    from autoresearch.runners.docker import DockerRunner

    gpu = GpuDevice(index=0, uuid="GPU-fake-0", name="Fake", total_mb=80_000, free_mb=80_000)
    base = make_runner()
    settings = base.settings.model_copy(update={"gpus": ["0"], "gpu_mode": "explicit", "gpu_release_wait_s": 5})
    runner = DockerRunner(settings, repo_id=base.repo_id, instance="pytest", gpu_probe=LivePidGpu([gpu]))
    body = "import os, time\nprint(os.environ['CUDA_VISIBLE_DEVICES'])\ntime.sleep(1.5)\n"
    spec = make_spec(script(workdir, "gpu.py", body))
    out = run(runner, spec)
    assert out.cause == "ok" and out.gpu_count == 1
    assert "GPU-fake-0" in spec.log_path.read_text()
    assert out.peak_memory_gb is not None and out.peak_memory_gb >= 1.0  # the NVML-style sampler saw its PIDs


STDOUT_APART = """\
import sys, time
print("val_bpb: 2.0", flush=True)
print("val_bpb: 0.001", file=sys.stderr, flush=True)
time.sleep(float(sys.argv[1]))
print("val_bpb: 0.5", flush=True)
"""


@pytest.mark.parametrize(("sleep", "budget", "cause", "metric"), [(0.0, 30.0, "ok", 0.5), (30.0, 2.0, "timeout", 2.0)])
def test_stdout_is_kept_apart_up_to_the_deadline(make_runner, make_spec, workdir, tmp_path, sleep, budget, cause,
                                                 metric):
    """metric_source = stdout: stderr reaches the log only; stdout printed after the deadline is not copied."""
    from autoresearch.judging.judge import last_value

    spec = make_spec(script(workdir, "printer.py", STDOUT_APART) + f" {sleep}", budget=budget, grace=0.0,
                     stdout_path=tmp_path / "stdout.log")
    out = run(make_runner(stop_timeout_s=1), spec)
    stdout = (tmp_path / "stdout.log").read_text()
    assert out.cause == cause
    assert "val_bpb: 0.001" in spec.log_path.read_text() and "val_bpb: 0.001" not in stdout
    assert last_value(stdout, "val_bpb") == metric

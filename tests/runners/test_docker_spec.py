"""DockerRunner without an engine: the sandbox's shape, the tree copy, and errors before any run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoresearch.config import DockerSettings, Settings
from autoresearch.errors import ConfigError, EngineUnavailable
from autoresearch.gpu import GpuDevice
from autoresearch.runners import docker_spec
from autoresearch.runners.base import RunSpec
from autoresearch.runners.docker import DockerRunner
from autoresearch.runners.docker_files import RunFiles, copy_tree

GPU = GpuDevice(index=0, uuid="GPU-abc", name="H100", total_mb=80_000, free_mb=79_000)


def spec(tmp_path: Path, **kw: object) -> RunSpec:
    work = tmp_path / "repo"
    work.mkdir(exist_ok=True)
    (work / "train.py").write_text("print(1)\n")
    (work / "prepare.py").write_text("print(2)\n")
    defaults: dict[str, object] = {
        "n": 3,
        "kind": "train",
        "command": "python3 train.py",
        "workdir": work,
        "budget": 5.0,
        "grace": 1.0,
        "env": {},
        "log_path": tmp_path / "runs" / "3" / "run.log",
        "log_cap_bytes": 1000,
        "target": "train.py",
        "readonly": ("prepare.py",),
    }
    return RunSpec(**{**defaults, **kw})  # type: ignore[arg-type]


def test_parse_size():
    assert docker_spec.parse_size("512m") == 512 << 20
    assert docker_spec.parse_size("8g") == 8 << 30
    assert docker_spec.parse_size("1.5G") == 3 << 29
    assert docker_spec.parse_size("1024") == 1024
    with pytest.raises(ConfigError):
        docker_spec.parse_size("lots")


def test_environment_is_an_allow_list():
    settings = DockerSettings(env={"LD_LIBRARY_PATH": "/x", "ANTHROPIC_API_KEY": "leak"}, env_allow=["PYTHONHASHSEED"])
    host = {"PYTHONHASHSEED": "1", "HOME": "/root", "ANTHROPIC_API_KEY": "sk", "AWS_SECRET": "s"}
    spec_env = {"AUTORESEARCH_TIME_BUDGET": "5", "AUTORESEARCH_CACHE": "/host/cache", "PATH": "/host/bin"}
    env = docker_spec.environment(spec_env, host, settings, cache=True)
    assert env["AUTORESEARCH_TIME_BUDGET"] == "5" and env["AUTORESEARCH_CACHE"] == "/cache"
    assert env["PYTHONHASHSEED"] == "1" and env["LD_LIBRARY_PATH"] == "/x" and env["HOME"] == "/tmp"
    assert "ANTHROPIC_API_KEY" not in env and "AWS_SECRET" not in env and "PATH" not in env
    assert "AUTORESEARCH_CACHE" not in docker_spec.environment(spec_env, host, settings, cache=False)


def test_gpu_options_runtime_and_explicit():
    assert docker_spec.gpu_options(DockerSettings(), []) == {}
    all_gpus = docker_spec.gpu_options(DockerSettings(gpus="all"), [GPU])["device_requests"][0]
    assert all_gpus["Count"] == -1 and all_gpus["Capabilities"] == [["gpu"]]
    one = docker_spec.gpu_options(DockerSettings(gpus=["0"]), [GPU])["device_requests"][0]
    assert one["DeviceIDs"] == ["GPU-abc"]
    explicit = DockerSettings(gpus=["0"], gpu_mode="explicit", devices=["/dev/nvidia0", "/dev/nvidiactl"])
    opts = docker_spec.gpu_options(explicit, [GPU])
    assert opts["devices"] == ["/dev/nvidia0:/dev/nvidia0:rwm", "/dev/nvidiactl:/dev/nvidiactl:rwm"]
    assert opts["environment_extra"] == {"CUDA_VISIBLE_DEVICES": "GPU-abc"}
    assert "device_requests" not in opts


def test_runtime_mode_drops_the_hosts_gpu_numbering(tmp_path):
    s = spec(tmp_path)
    files = RunFiles.create(s)
    common = {"spec": s, "files": files, "cache_dir": None, "labels": {}, "name": "n"}
    env = {"CUDA_VISIBLE_DEVICES": "3"}
    runtime = docker_spec.create_options(settings=DockerSettings(gpus=["3"]), env=env, chosen=[GPU], **common)
    assert "CUDA_VISIBLE_DEVICES" not in runtime["environment"]
    explicit = DockerSettings(gpus=["3"], gpu_mode="explicit")
    opts = docker_spec.create_options(settings=explicit, env=env, chosen=[GPU], **common)
    assert opts["environment"]["CUDA_VISIBLE_DEVICES"] == "GPU-abc"
    files.cleanup()


def test_create_options_harden_the_container(tmp_path):
    s = spec(tmp_path, cache_dir=tmp_path / "cache")
    files = RunFiles.create(s)
    settings = DockerSettings(cpus=1.5, mounts=["/usr", "/opt/x:/x"])
    opts = docker_spec.create_options(
        settings=settings,
        spec=s,
        files=files,
        cache_dir=str(tmp_path / "cache"),
        env={"A": "1"},
        chosen=[],
        labels=docker_spec.labels("r", "i", s),
        name=docker_spec.container_name("my repo/x", 3, "abc"),
    )
    assert opts["network_mode"] == "none" and opts["read_only"] and opts["cap_drop"] == ["ALL"]
    assert opts["security_opt"] == ["no-new-privileges"] and opts["user"] == "65534:65534"
    assert opts["mem_limit"] == opts["memswap_limit"] == 8 << 30 and opts["nano_cpus"] == 1_500_000_000
    assert opts["pids_limit"] == 512 and opts["init"] is True and opts["log_config"]["Type"] == "none"
    assert "size=1073741824" in opts["tmpfs"]["/tmp"] and "uid=65534,gid=65534" in opts["tmpfs"]["/tmp"]
    assert "noexec" not in opts["tmpfs"]["/tmp"]
    assert opts["name"] == "autoresearch-my-repo-x-3-abc"
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in opts["mounts"]}
    assert mounts["/workspace"] == (str(files.workspace), True)
    assert mounts["/workspace/train.py"] == (str(files.target), False)
    assert mounts["/cache"] == (str(tmp_path / "cache"), True)
    assert mounts["/output"][1] is False
    assert mounts["/usr"] == ("/usr", True) and mounts["/x"] == ("/opt/x", True)
    assert not any("docker.sock" in src for src, _ in mounts.values())
    files.cleanup()
    assert not files.workspace.exists()


def test_copy_tree_leaves_out_git_and_special_files(tmp_path):
    src = tmp_path / "src"
    (src / ".git").mkdir(parents=True)
    (src / "pkg").mkdir()
    (src / "pkg" / "m.py").write_text("x")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o700)
    (src / "secret").write_text("s")
    (src / "secret").chmod(0o600)
    (src / "link").symlink_to("/etc/shadow")
    os.mkfifo(src / "fifo")
    dst = tmp_path / "dst"
    dst.mkdir()
    copy_tree(src, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["link", "pkg", "run.sh", "secret"]
    assert (dst / "link").is_symlink() and os.readlink(dst / "link") == "/etc/shadow"
    assert (dst / "run.sh").stat().st_mode & 0o777 == 0o755 and (dst / "secret").stat().st_mode & 0o777 == 0o644


def test_from_config_does_nothing_and_engine_errors_are_clear(tmp_path):
    settings = Settings(runner="docker", docker=DockerSettings(host=f"unix://{tmp_path}/none.sock"))
    runner = DockerRunner.from_config(settings, repo_id="r", instance="i")
    assert runner.name == "docker"
    with pytest.raises(EngineUnavailable, match=r"unreachable at unix://.*is dockerd running"):
        runner.check()
    with pytest.raises(EngineUnavailable):
        runner.run(spec(tmp_path), lambda _h: None)
    with pytest.raises(EngineUnavailable):
        runner.reap_orphans()
    assert runner.reap({"kind": "process", "pgid": 1}) is False


def test_plain_commands_run_without_a_shell():
    """So SIGTERM reaches the script itself; anything shell-like still goes through sh -c."""
    assert docker_spec.command("python3 train.py --lr 1e-3") == ["python3", "train.py", "--lr", "1e-3"]
    assert docker_spec.command("python3 -c 'print(1)'") == ["/bin/sh", "-c", "python3 -c 'print(1)'"]
    assert docker_spec.command("cd src && python3 t.py")[:2] == ["/bin/sh", "-c"]
    assert docker_spec.command("A=1 python3 t.py")[:2] == ["/bin/sh", "-c"]
    assert docker_spec.command("exit 3") == ["/bin/sh", "-c", "exit 3"]


def test_run_files_with_the_log_inside_the_tree_do_not_copy_themselves(tmp_path):
    (tmp_path / "train.py").write_text("print(1)\n")
    spec = RunSpec(n=0, kind="train", command="python3 train.py", workdir=tmp_path, budget=1, grace=1, env={},
                   log_path=tmp_path / "run.log", log_cap_bytes=1024, target="train.py")  # fmt: skip
    files = RunFiles.create(spec)
    try:
        assert (files.workspace / "train.py").read_text() == "print(1)\n"
        assert not any(p.name.startswith(".workspace-") for p in files.workspace.iterdir())
    finally:
        files.cleanup()

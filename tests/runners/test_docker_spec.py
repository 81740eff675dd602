"""DockerRunner without an engine: the sandbox's shape, the run's files, and errors before any run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from autoresearch.errors import ConfigError, EngineUnavailable, RunnerError
from autoresearch.ops.config import DockerSettings, Settings
from autoresearch.runners import docker_spec
from autoresearch.runners.base import RunSpec
from autoresearch.runners.docker import DockerRunner
from autoresearch.runners.docker_files import RunFiles
from autoresearch.runners.gpu import GpuDevice

GPU = GpuDevice(index=0, uuid="GPU-abc", name="H100", total_mb=80_000, free_mb=79_000)


def spec(tmp_path: Path, **kw: object) -> RunSpec:
    """A run of the commit in ``snap``; the working tree beside it holds an untracked .env."""
    work, snap = tmp_path / "repo", tmp_path / "snap"
    for tree in (work, snap):
        tree.mkdir(exist_ok=True)
        (tree / "train.py").write_text("print(1)\n")
        (tree / "prepare.py").write_text("print(2)\n")
    (work / ".env").write_text("SECRET=1\n")
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
        "snapshot": snap,
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
    assert "AUTORESEARCH_EVAL_DATA" not in env
    assert docker_spec.environment(spec_env, host, settings, True, eval_data=True)["AUTORESEARCH_EVAL_DATA"] == "/eval"


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
    files.volume = "vol"  # the runner makes it (docker_output) before the container
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
    assert mounts["/workspace"] == (str(tmp_path / "snap"), True)
    assert mounts["/workspace/train.py"] == (str(files.target), False)
    assert mounts["/cache"] == (str(tmp_path / "cache"), True)
    assert mounts["/output"] == ("vol", False) and "/eval" not in mounts
    output = next(m for m in opts["mounts"] if m["Target"] == "/output")
    assert output["Type"] == "volume" and output["VolumeOptions"]["NoCopy"] is True
    assert mounts["/usr"] == ("/usr", True) and mounts["/x"] == ("/opt/x", True)
    assert not any("docker.sock" in src for src, _ in mounts.values())
    files.cleanup()
    assert not files.private.exists() and files.workspace.exists(), "the snapshot belongs to its maker"


def test_evaluate_sees_the_whole_tree_and_the_output_read_only_and_the_eval_data(tmp_path):
    train_out, data = tmp_path / "out", tmp_path / "eval"
    train_out.mkdir()
    data.mkdir()
    s = spec(tmp_path, kind="evaluate", output_dir=train_out, eval_data=data)
    files = RunFiles.create(s)
    opts = docker_spec.create_options(settings=DockerSettings(), spec=s, files=files, cache_dir=None, env={},
                                      chosen=[], labels={}, name="n")  # fmt: skip
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in opts["mounts"]}
    assert mounts == {
        "/workspace": (str(tmp_path / "snap"), True),
        "/output": (str(train_out), True),
        "/eval": (str(data), True),
    }
    files.discard_output()
    files.cleanup()
    assert train_out.is_dir(), "evaluate never removes the training run's output"


def test_train_never_sees_the_eval_data_and_check_reads_the_output(tmp_path):
    data = tmp_path / "eval"
    data.mkdir()
    for kind in ("train", "check"):
        s = spec(tmp_path, kind=kind, eval_data=data, output_dir=tmp_path / "out")
        (tmp_path / "out").mkdir(exist_ok=True)
        files = RunFiles.create(s)
        mounts = {m["Target"]: m for m in docker_spec.mounts(s, files, None, DockerSettings())}
        assert "/eval" not in mounts and not mounts["/workspace/train.py"]["ReadOnly"]
        if kind == "check":
            assert mounts["/output"]["ReadOnly"] and mounts["/output"]["Type"] == "bind"
        else:
            assert "/output" not in mounts, "a writing run's /output is the engine volume, never a host folder"
        files.cleanup()


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


def test_run_files_come_from_the_snapshot_never_the_working_tree(tmp_path):
    s = spec(tmp_path)
    (tmp_path / "repo" / "train.py").write_text("print('uncommitted')\n")
    files = RunFiles.create(s)
    try:
        assert files.target is not None and files.target.read_text() == "print(1)\n"
        assert files.workspace == (tmp_path / "snap").resolve() and not (files.workspace / ".env").exists()
        assert files.changed(s) == []
        files.target.write_text("evil")
        assert files.changed(s) == ["train.py"]
    finally:
        files.cleanup()
    with pytest.raises(RunnerError, match="no snapshot"):
        RunFiles.create(dataclasses.replace(s, snapshot=None))

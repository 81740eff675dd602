"""The Docker runner of a lane: its GPUs and cores, its labels, and orphan reaping that spares other lanes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from autoresearch.errors import GpuError
from autoresearch.ops.config import Settings
from autoresearch.runners import docker_spec, lane_runners, runner_for_lane
from autoresearch.runners.docker import DockerRunner
from autoresearch.runners.docker_files import RunFiles
from autoresearch.runners.gpu import FakeGpu, GpuDevice
from autoresearch.runners.lanes import Lane
from tests.runners.test_docker_spec import spec

GPUS = [GpuDevice(i, f"GPU-lane-{i}", "Fake", 80_000, 79_000) for i in range(2)]


def test_a_lanes_runner_gets_only_its_gpus_and_cores(tmp_path: Path) -> None:
    settings = Settings(runner="docker", docker={"gpus": "all"}, lanes=2)
    runner = runner_for_lane(settings, "r", "i", Lane(1, ("1",), (2, 3)))
    assert isinstance(runner, DockerRunner)
    assert runner.settings.gpus == ["1"] and settings.docker.gpus == "all"
    s = spec(tmp_path)
    files = RunFiles.create(s)
    files.volume = "vol"
    opts = docker_spec.create_options(settings=runner.settings, spec=s, files=files, cache_dir=None, env={},
                                      chosen=[GPUS[1]], labels=runner._labels(s), name="n", cpuset=(2, 3))
    assert opts["cpuset_cpus"] == "2,3"
    assert opts["device_requests"][0]["DeviceIDs"] == ["GPU-lane-1"]
    assert opts["labels"]["autoresearch.lane"] == "1" and opts["labels"]["autoresearch.instance"] == "i"
    files.cleanup()


def test_an_unpinned_lane_changes_nothing(tmp_path: Path) -> None:
    settings = Settings(runner="docker", docker={"gpus": "all"})
    runner = runner_for_lane(settings, "r", "i", Lane(0))
    assert isinstance(runner, DockerRunner) and runner.settings.gpus == "all"
    s = spec(tmp_path)
    files = RunFiles.create(s)
    opts = docker_spec.create_options(settings=runner.settings, spec=s, files=files, cache_dir=None, env={},
                                      chosen=GPUS, labels={}, name="n")
    assert "cpuset_cpus" not in opts
    files.cleanup()


@pytest.mark.parametrize(("labels", "lane", "orphan"), [
    ({"autoresearch.instance": "me", "autoresearch.lane": "1"}, 0, False),  # my other lane: live
    ({"autoresearch.instance": "me", "autoresearch.lane": "0"}, 0, True),  # my own lane, idle: left over
    ({"autoresearch.instance": "dead", "autoresearch.lane": "1"}, 0, True),  # a dead daemon's run
    ({"autoresearch.instance": "me", "autoresearch.lane": "1"}, None, True),  # a one-lane runner owns all
    ({"autoresearch.instance": "me"}, 0, False),  # labelled before lanes, by this daemon: not mine to judge
])
def test_which_containers_are_orphans(labels: dict[str, str], lane: int | None, orphan: bool) -> None:
    assert docker_spec.is_orphan(labels, "me", lane) is orphan


def lane_runner(make_runner: Any, lane: Lane, instance: str = "pytest", gpus: list[GpuDevice] = GPUS,
                **settings: Any) -> DockerRunner:
    base = make_runner(**settings)
    docker = base.settings.model_copy(update={"gpus": list(lane.gpus)} if lane.gpus else {})
    return DockerRunner(docker, repo_id=base.repo_id, instance=instance, gpu_probe=FakeGpu(list(gpus)), lane=lane)


PINNED = r"""
import json, os
print("PINNED " + json.dumps({
    "affinity": sorted(os.sched_getaffinity(0)),
    "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
}))
"""


@pytest.mark.docker
def test_a_pinned_run_sees_its_core_and_gpu(make_runner, make_spec, workdir, docker_client):
    runner = lane_runner(make_runner, Lane(1, ("1",), (1,)), gpu_mode="explicit")
    (workdir / "pinned.py").write_text(PINNED)
    inspected: dict[str, Any] = {}

    def on_started(handle: dict[str, Any]) -> None:
        assert handle["lane"] == 1
        inspected.update(docker_client.api.inspect_container(handle["container_id"]))

    s = make_spec("python3 pinned.py")
    out = runner.run(s, on_started)
    assert out.cause == "ok", s.log_path.read_text()
    seen = json.loads(s.log_path.read_text().split("PINNED ", 1)[1])
    assert seen == {"affinity": [1], "cuda": "GPU-lane-1"}
    assert inspected["HostConfig"]["CpusetCpus"] == "1"
    assert inspected["Config"]["Labels"]["autoresearch.lane"] == "1"
    assert "CUDA_VISIBLE_DEVICES=GPU-lane-1" in inspected["Config"]["Env"]


@pytest.mark.docker
def test_a_lanes_missing_or_held_gpu_stops_that_lane_only(make_runner, make_spec):
    held = [GPUS[0], GpuDevice(1, "GPU-lane-1", "Fake", 80_000, 200)]  # a dead run still holds GPU 1
    lanes = [lane_runner(make_runner, Lane(i, (str(i),), (i,)), gpus=held, gpu_mode="explicit") for i in range(2)]
    with pytest.raises(GpuError, match=r"GPU 1 .* free"):
        lanes[1].run(make_spec("true"), lambda _h: None)
    assert lanes[0].run(make_spec("true"), lambda _h: None).cause == "ok"
    missing = lane_runner(make_runner, Lane(2, ("2",), (0,)), gpu_mode="explicit")
    with pytest.raises(GpuError, match="GPU '2' not found"):
        missing.run(make_spec("true"), lambda _h: None)


@pytest.mark.docker
def test_orphan_reaping_spares_the_other_lanes_run(make_runner, make_spec, docker_client):
    lane0, lane1 = (lane_runner(make_runner, Lane(i, (), (i,))) for i in range(2))
    started = threading.Event()
    handles: list[dict[str, Any]] = []
    s = make_spec("sleep 60", budget=60.0)

    def on_started(handle: dict[str, Any]) -> None:
        handles.append(handle)
        started.set()

    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(lane0.run(s, on_started)))
    thread.start()
    try:
        assert started.wait(60), "lane 0's run never started"
        assert lane1.reap_orphans() == 0
        assert docker_client.api.inspect_container(handles[0]["container_id"])["State"]["Running"]
        restarted = lane_runner(make_runner, Lane(1, (), (1,)), instance="pytest-restarted")
        assert restarted.reap_orphans() == 1, "a run of another daemon instance is an orphan to every lane"
    finally:
        s.cancel.set()
        thread.join(timeout=60)
    assert result and result[0].cause in ("docker", "interrupted", "signal:9", "exit:137")


def test_lane_runners_pin_one_runner_per_planned_lane() -> None:
    settings = Settings(runner="docker", docker={"gpus": "all"}, lanes="auto")
    pairs = lane_runners(settings, "r", "i", gpu_probe=FakeGpu(list(GPUS)))
    assert [lane.gpus for lane, _ in pairs] == [("0",), ("1",)]
    runners = [runner for _, runner in pairs]
    assert all(isinstance(r, DockerRunner) for r in runners)
    assert [r.settings.gpus for r in runners if isinstance(r, DockerRunner)] == [["0"], ["1"]]

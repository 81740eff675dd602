"""The process runner of a lane: its runs see only its GPUs and run on its cores, in the sandbox and
bare; a lane's missing or held GPU stops that lane only; reaping one lane spares another's live run."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from autoresearch.errors import GpuError
from autoresearch.ops.config import Settings
from autoresearch.runners import procs, runner_for_lane
from autoresearch.runners.gpu import FakeGpu, GpuDevice
from autoresearch.runners.lanes import Lane, plan_lanes
from autoresearch.runners.process import ProcessRunner
from tests.runners.process_helpers import make_spec, marked_pids, token

GPUS = [GpuDevice(i, f"GPU-fake-{i}", "Fake", 80_000, 79_000) for i in range(2)]
PINNED = """\
import json, os
print("PINNED " + json.dumps({"affinity": sorted(os.sched_getaffinity(0)),
                              "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                              "order": os.environ.get("CUDA_DEVICE_ORDER")}))
"""


def spec_in(folder: Path, script: str = PINNED, **kw: Any) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    return make_spec(folder, script, **kw)


def lane_runner(lane: Lane, sandbox: str = "bwrap", instance: str = "me", gpus: list[GpuDevice] = GPUS,
                repo_id: str = "") -> ProcessRunner:
    settings = Settings(runner="process", lanes=2, process={"sandbox": sandbox, "kill_timeout_s": 1.0})
    runner = runner_for_lane(settings, repo_id, instance, lane, gpu_probe=FakeGpu(list(gpus)))
    assert isinstance(runner, ProcessRunner)
    return runner


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_a_pinned_run_sees_its_core_and_gpu(tmp_path: Path, mode: str) -> None:
    handles: list[dict[str, Any]] = []
    spec = make_spec(tmp_path, PINNED)
    out = lane_runner(Lane(1, ("1",), (1,)), mode).run(spec, handles.append)
    assert out.cause == "ok", spec.log_path.read_text()
    seen = json.loads(spec.log_path.read_text().split("PINNED ", 1)[1])
    assert seen == {"affinity": [1], "cuda": "1", "order": "PCI_BUS_ID"}
    assert handles[0]["lane"] == 1 and out.gpu_count == 1


def test_each_planned_lane_gets_its_own_core(tmp_path: Path) -> None:
    settings = Settings(runner="process", lanes=2, process={"sandbox": "bwrap", "gpus": "none"})
    for lane in plan_lanes(settings, FakeGpu(list(GPUS)), cpus=[0, 1]):
        spec = spec_in(tmp_path / str(lane.index))
        out = runner_for_lane(settings, "", "me", lane).run(spec, lambda _h: None)
        assert out.cause == "ok", spec.log_path.read_text()
        seen = json.loads(spec.log_path.read_text().split("PINNED ", 1)[1])
        assert seen["affinity"] == [lane.index] and seen["cuda"] == "", "gpus = none: no GPU at all"


def test_an_unpinned_lane_runs_as_before(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, PINNED)
    runner = lane_runner(Lane(0))
    assert runner.taskset is None and runner.settings.gpus == "all"
    assert runner.run(spec, lambda _h: None).cause == "ok"


def test_a_lanes_missing_or_held_gpu_stops_that_lane_only(tmp_path: Path) -> None:
    held = [GPUS[0], GpuDevice(1, "GPU-fake-1", "Fake", 80_000, 100)]  # a dead run still holds GPU 1
    with pytest.raises(GpuError, match=r"GPU 1 \(Fake\) has only 100 MiB free"):
        lane_runner(Lane(1, ("1",), (1,)), gpus=held).run(spec_in(tmp_path / "1"), lambda _h: None)
    assert lane_runner(Lane(0, ("0",), (0,)), gpus=held).run(spec_in(tmp_path / "0"),
                                                              lambda _h: None).cause == "ok"
    with pytest.raises(GpuError, match="GPU '2' not found"):
        lane_runner(Lane(2, ("2",), (0,))).run(spec_in(tmp_path / "2"), lambda _h: None)


@pytest.mark.parametrize("mode", ["bwrap", "none"])
def test_orphan_reaping_spares_the_other_lanes_run(tmp_path: Path, mode: str) -> None:
    mark = token()
    repo = f"pytest-lanes-{mark}"
    lane0, lane1 = (lane_runner(Lane(i, (), (i,)), mode, repo_id=repo) for i in range(2))
    spec = make_spec(tmp_path, f"import subprocess\nsubprocess.run(['sleep', '{mark}'])\n", budget=60.0)
    started = threading.Event()
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(lane0.run(spec, lambda _h: started.set())))
    thread.start()
    try:
        assert started.wait(30)
        assert procs.wait_gone(lambda: set() if marked_pids(mark) else {0}, 10.0), "the run never slept"
        assert lane1.reap_orphans() == 0
        assert marked_pids(mark), "lane 1's reaping killed lane 0's live run"
        restarted = lane_runner(Lane(1, (), (1,)), mode, instance="restarted", repo_id=repo)
        assert restarted.reap_orphans() >= 1, "a run of another daemon instance is an orphan to every lane"
        assert procs.wait_gone(lambda: marked_pids(mark), 10.0)
    finally:
        spec.cancel.set()
        thread.join(timeout=30)
    assert result and result[0].cause != "ok"

"""plan_lanes: how lanes share a host's GPUs and cores, and the errors of plans that cannot exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoresearch.errors import ConfigError
from autoresearch.ops.config import Settings, load_settings
from autoresearch.runners.gpu import FakeGpu, GpuDevice, NoGpu
from autoresearch.runners.lanes import Lane, plan_lanes


def gpus(count: int) -> FakeGpu:
    return FakeGpu([GpuDevice(i, f"GPU-{i:04d}", "Fake H100", 81559.0, 81000.0) for i in range(count)])


def settings(tmp_path: Path, **flags: Any) -> Settings:
    return load_settings(tmp_path, runner="docker", docker={"gpus": "all"}, **flags)


def test_one_lane_is_unpinned_whatever_the_host(tmp_path: Path) -> None:
    assert plan_lanes(load_settings(tmp_path), gpus(8), cpus=range(64)) == [Lane(0)]
    assert not plan_lanes(load_settings(tmp_path), gpus(8))[0].pinned


def test_auto_is_one_lane_per_gpu_with_a_share_of_the_cores(tmp_path: Path) -> None:
    lanes = plan_lanes(settings(tmp_path, lanes="auto"), gpus(8), cpus=range(32))
    assert [lane.gpus for lane in lanes] == [(str(i),) for i in range(8)]
    assert [lane.cpus for lane in lanes] == [tuple(range(4 * i, 4 * i + 4)) for i in range(8)]
    assert [lane.index for lane in lanes] == list(range(8))
    assert lanes[3].label == "lane 3 (gpu 3)"


def test_a_number_of_lanes_takes_the_first_gpus(tmp_path: Path) -> None:
    lanes = plan_lanes(settings(tmp_path, lanes=3), gpus(8), cpus=range(7))
    assert [lane.gpus for lane in lanes] == [("0",), ("1",), ("2",)]
    assert [lane.cpus for lane in lanes] == [(0, 1), (2, 3), (4, 5)]  # equal shares: core 6 is no lane's


def test_two_gpus_per_lane(tmp_path: Path) -> None:
    lanes = plan_lanes(settings(tmp_path, lanes="auto", gpus_per_lane=2), gpus(8), cpus=range(8))
    assert [lane.gpus for lane in lanes] == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]
    odd = plan_lanes(settings(tmp_path, lanes="auto", gpus_per_lane=2), gpus(5), cpus=range(8))
    assert len(odd) == 2, "a GPU left over from the pairs stays unused"


def test_the_runner_gpu_list_is_the_pool(tmp_path: Path) -> None:
    s = load_settings(tmp_path, runner="docker", lanes="auto", docker={"gpus": ["2", "GPU-0005"]})
    assert [lane.gpus for lane in plan_lanes(s, gpus(8), cpus=range(2))] == [("2",), ("5",)]


def test_too_many_lanes_for_the_gpus_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lanes \(flag --lanes\): 9 lanes x 1 GPU\(s\) needs 9 GPUs; "
                                          r"this host has 8 usable"):
        plan_lanes(settings(tmp_path, lanes=9), gpus(8), cpus=range(8))
    with pytest.raises(ConfigError, match=r"lanes \(flag --lanes\): 3 lanes x 2 GPU\(s\) needs 6"):
        plan_lanes(settings(tmp_path, lanes=3, gpus_per_lane=2), gpus(5), cpus=range(8))
    with pytest.raises(ConfigError, match=r"gpus_per_lane \(flag --gpus-per-lane\): one lane x 4 GPU"):
        plan_lanes(settings(tmp_path, lanes="auto", gpus_per_lane=4), gpus(2), cpus=range(8))


def test_a_missing_gpu_in_the_list_names_the_runner_key(tmp_path: Path) -> None:
    s = load_settings(tmp_path, runner="docker", lanes=2, docker={"gpus": ["0", "7"]})
    with pytest.raises(ConfigError, match=r"docker.gpus .*GPU\(s\) 7 not found; this host has 0, 1"):
        plan_lanes(s, gpus(2), cpus=range(2))


def test_without_gpus_lanes_split_the_cores(tmp_path: Path) -> None:
    lanes = plan_lanes(load_settings(tmp_path, lanes=2), NoGpu(), cpus=[0, 1])
    assert lanes == [Lane(0, (), (0,)), Lane(1, (), (1,))]
    assert lanes[1].label == "lane 1 (cpu 1)"
    none = load_settings(tmp_path, runner="docker", lanes=2)  # docker.gpus = none: CPU lanes on a GPU host
    assert [lane.cpus for lane in plan_lanes(none, gpus(8), cpus=range(4))] == [(0, 1), (2, 3)]
    assert plan_lanes(load_settings(tmp_path, lanes="auto"), NoGpu(), cpus=[0, 1]) == [Lane(0)]


def test_more_cpu_lanes_than_cores_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORESEARCH_LANES", "3")
    with pytest.raises(ConfigError, match=r"lanes \(env AUTORESEARCH_LANES\): 3 lanes on a host without GPUs each "
                                          r"need a CPU core; this process may use 2 \(0,1\)"):
        plan_lanes(load_settings(tmp_path), NoGpu(), cpus=[0, 1])


def test_lanes_setting_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'lanes .*must be "auto" or a whole number'):
        load_settings(tmp_path, lanes=0)
    with pytest.raises(ConfigError, match="gpus_per_lane"):
        load_settings(tmp_path, gpus_per_lane=0)


class _NoNvml:
    """A login node whose NVML cannot even be listed: the Slurm plan must not ask it."""

    def devices(self) -> list[GpuDevice]:
        raise AssertionError("the Slurm plan read this host's GPUs")

    def used_by(self, pids: set[int]) -> float:
        raise AssertionError("the Slurm plan read this host's GPUs")


def test_slurm_lanes_are_jobs_whatever_this_host_has(tmp_path: Path) -> None:
    """A login node with no GPU and one core still runs 4 lanes: each is one Slurm job at a time."""
    s = load_settings(tmp_path, runner="slurm", lanes=4, slurm={"shared_dir": str(tmp_path)})
    lanes = plan_lanes(s, _NoNvml(), cpus=[0])
    assert lanes == [Lane(0), Lane(1), Lane(2), Lane(3)]
    assert not any(lane.pinned for lane in lanes), "the cluster places the job, not this host"
    assert len(plan_lanes(s, gpus(1), cpus=range(2))) == 4, "nor do this host's GPUs cap the lanes"


def test_slurm_refuses_auto_lanes_naming_the_key(tmp_path: Path) -> None:
    s = load_settings(tmp_path, runner="slurm", lanes="auto", slurm={"shared_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"lanes \(flag --lanes\): auto counts this host's GPUs.*number of jobs"):
        plan_lanes(s, _NoNvml(), cpus=[0])

"""The Slurm CLI driver's parsing and its one translation of failures (fake commands on PATH)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoresearch.errors import ConfigError, EngineUnavailable, SlurmError, SlurmUnavailable
from autoresearch.runners.slurm_cli import RealSlurm, parse_scontrol, parse_squeue

LINE = ("JobId=42 JobName=ar-x-3-train-a1 UserId=root(0) JobState=RUNNING Reason=None Dependency=(null) "
        "StartTime=2026-12-02T21:18:56 EndTime=2026-12-02T22:18:56 NodeList=vm Command=/x y z WorkDir=/tmp")


def _fake(tmp_path: Path, name: str, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_scontrol_line_is_parsed() -> None:
    info = parse_scontrol(LINE)
    assert info is not None and (info.job_id, info.state, info.node, info.name) == ("42", "RUNNING", "vm",
                                                                                    "ar-x-3-train-a1")
    assert info.start is not None and info.end is None and info.running and not info.ended
    queued = parse_scontrol(LINE.replace("JobState=RUNNING", "JobState=PENDING").replace("NodeList=vm", "NodeList="))
    assert queued is not None and queued.start is None and not queued.running  # StartTime is only an estimate


def test_squeue_json_entry_is_parsed() -> None:
    info = parse_squeue({"job_id": 5, "name": "n", "job_state": "PENDING", "state_reason": "JobHeldUser",
                         "start_time": 0, "nodes": ""})
    assert info.held and info.start is None and info.job_id == "5"


def test_a_controller_that_is_down_is_waited_out_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, "scontrol", "echo 'slurm_load_jobs error: Unable to contact slurm controller (connect "
          "failure)' >&2; exit 1", monkeypatch)
    with pytest.raises(SlurmUnavailable) as caught:
        RealSlurm().job("1")
    assert isinstance(caught.value, EngineUnavailable) and caught.value.exit_code != 2  # waits.TRANSIENT


def test_scontrol_ping_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, "scontrol", "echo 'Slurmctld(primary) at vm is DOWN'; exit 1", monkeypatch)
    with pytest.raises(SlurmUnavailable, match="DOWN"):
        RealSlurm().ping()


def test_other_failures_keep_slurms_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, "sbatch", "echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1", monkeypatch)
    with pytest.raises(SlurmError, match="invalid partition"):
        RealSlurm().submit("/x/job.sh", ["--partition=nope"])


def test_a_missing_command_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="slurm-client"):
        RealSlurm().ping()


def test_a_forgotten_job_is_read_from_the_completion_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake(tmp_path, "scontrol", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", monkeypatch)
    _fake(tmp_path, "sacct", "echo '9|ar-x|CANCELLED by 0|vm|2026-12-02T21:00:00|2026-12-02T21:01:00'", monkeypatch)
    info = RealSlurm().job("9")
    assert info is not None and info.state == "CANCELLED" and info.node == "vm" and info.ended

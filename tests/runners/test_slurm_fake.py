"""The Slurm runner against the in-memory controller (``slurm_fake``): the budget from the job's start,
queue time apart, resubmission of node failures, outside cancellations, re-attaching after a daemon's
death, a controller that stops answering; and the settings' checks."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from autoresearch.errors import ConfigError
from autoresearch.ops.config import load_settings
from autoresearch.runners.process import ProcessRunner
from autoresearch.runners.slurm_fake import FakeSlurm, Fate
from tests.runners.slurm_helpers import collect as _collect
from tests.runners.slurm_helpers import runner as _runner
from tests.runners.slurm_helpers import spec as _spec


def test_queue_time_is_not_budget_and_is_journaled(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(queue_s=1.0, run_s=0.3)])  # queued longer than budget + grace
    handles, on_started = _collect()
    outcome = _runner(tmp_path, fake).run(_spec(tmp_path), on_started)
    assert outcome.cause == "ok" and not fake.cancels
    assert outcome.queued_s is not None and 0.9 <= outcome.queued_s < 2.0
    assert handles[0]["job_id"] is None and "-7-train-a1-" in handles[0]["name"]  # named before sbatch
    assert handles[1]["job_id"] == "100" and handles[-1]["node"] == "fake0" and handles[-1]["started_at"]
    assert "--gres=gpu:1" in fake.submitted[0].args and any(a.startswith("--time=") for a in fake.submitted[0].args)


def test_runaway_is_cancelled_at_start_plus_budget_plus_grace(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(queue_s=0.5, run_s=60)])
    t0 = time.monotonic()
    outcome = _runner(tmp_path, fake).run(_spec(tmp_path), lambda _h: None)
    took = time.monotonic() - t0
    assert outcome.cause == "timeout" and fake.cancels == ["100"]
    assert 1.0 <= took < 3.0  # 0.5 queued + 0.5 deadline, never counted from the submission


def test_node_fail_is_submitted_again_with_a_fresh_budget(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=0.1, state="NODE_FAIL"), Fate(run_s=0.3)])
    handles, on_started = _collect()
    outcome = _runner(tmp_path, fake).run(_spec(tmp_path), on_started)
    assert outcome.cause == "ok" and len(fake.submitted) == 2
    assert handles[-1]["attempt"] == 2 and handles[-1]["job_id"] == "101"
    assert "-train-a2-" in fake.submitted[1].name


def test_node_failures_past_max_attempts_are_a_crash_with_that_cause(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(state="PREEMPTED"), Fate(state="PREEMPTED")])
    outcome = _runner(tmp_path, fake, max_attempts=2).run(_spec(tmp_path), lambda _h: None)
    assert outcome.cause == "preempted" and "2 times" in outcome.detail and len(fake.submitted) == 2


def test_a_cancellation_by_someone_else_is_recorded_with_its_reason(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=30)])

    def on_started(handle: dict[str, Any]) -> None:
        if handle.get("started_at"):  # someone else's scancel, once the job runs
            threading.Timer(0.1, lambda: fake.end(handle["job_id"], "CANCELLED", reason="Admin")).start()

    outcome = _runner(tmp_path, fake).run(_spec(tmp_path, budget=10), on_started)
    assert outcome.cause == "cancelled" and "Admin" in outcome.detail and not fake.cancels


def test_a_failing_script_is_its_exit_code(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=0.1, state="FAILED", exit_code=3)])
    outcome = _runner(tmp_path, fake).run(_spec(tmp_path), lambda _h: None)
    assert outcome.cause == "exit:3" and outcome.exit_code == 3


def test_a_stop_of_the_daemon_cancels_the_job(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=30)])
    spec = _spec(tmp_path, budget=10)
    outcome = _runner(tmp_path, fake).run(spec, lambda h: h.get("started_at") and spec.cancel.set())
    assert outcome.cause == "interrupted" and fake.cancels == ["100"]


def test_a_controller_that_stops_answering_is_waited_out(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=0.6)])
    beats: list[float] = []
    spec = _spec(tmp_path, budget=5, heartbeat=lambda: beats.append(time.monotonic()))

    def outage() -> None:
        fake.down = True
        time.sleep(0.5)
        fake.down = False

    threading.Timer(0.2, outage).start()
    outcome = _runner(tmp_path, fake).run(spec, lambda _h: None)
    assert outcome.cause == "ok" and beats


def test_reattach_keeps_a_running_jobs_deadline(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=60)])
    runner = _runner(tmp_path, fake)
    spec = _spec(tmp_path, budget=1.0, grace=0.0)
    job_id = fake.submit("job.sh", ["--job-name=ar-x-7-train-a1", f"--chdir={tmp_path / 'job'}"])
    fake.release(job_id)
    time.sleep(0.5)  # it ran half its budget while no daemon watched
    info = fake.job(job_id)
    assert info is not None and info.start is not None
    handle = {"runner": "slurm", "job_id": job_id, "name": "ar-x-7-train-a1", "attempt": 1,
              "submitted_at": info.start, "started_at": info.start, "node": "fake0", "deadline_s": 1.0}
    t0 = time.monotonic()
    outcome = runner.reattach(handle, spec)
    assert outcome is not None and outcome.cause == "timeout" and fake.cancels == [job_id]
    assert time.monotonic() - t0 < 0.9  # the deadline counts from the job's start, not from the re-attach


def test_reattach_waits_for_a_queued_job_and_reads_an_ended_one(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(queue_s=0.4, run_s=0.2)])
    runner = _runner(tmp_path, fake)
    spec = _spec(tmp_path)
    handles: list[dict[str, Any]] = []

    def record(handle: dict[str, Any]) -> None:
        handles.append(dict(handle))
        if handle["job_id"]:
            raise SystemExit  # the daemon dies right after journaling the job id

    with pytest.raises(SystemExit):
        runner.run(spec, record)
    assert fake.submitted[0].held  # never released: reattach releases it
    outcome = _runner(tmp_path, fake).reattach(handles[-1], _spec(tmp_path))
    assert outcome is not None and outcome.cause == "ok" and len(fake.submitted) == 1
    assert outcome.queued_s is not None and outcome.queued_s >= 0.3
    again = _runner(tmp_path, fake).reattach({**handles[-1]}, _spec(tmp_path))  # ended: read, not re-run
    assert again is not None and again.cause == "ok" and len(fake.submitted) == 1


def test_reattach_finds_a_job_journaled_by_name_only(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=0.1)])
    runner = _runner(tmp_path, fake)
    handles, on_started = _collect()
    runner.run(_spec(tmp_path), on_started)
    named_only = {**handles[0]}  # journaled before sbatch, killed before the id was written
    outcome = _runner(tmp_path, fake).reattach(named_only, _spec(tmp_path))
    assert outcome is not None and outcome.cause == "ok" and len(fake.submitted) == 1  # not submitted twice
    fresh = {**named_only, "name": named_only["name"].replace("7-train", "8-train")}
    assert _runner(tmp_path, fake).reattach(fresh, _spec(tmp_path)) is not None and len(fake.submitted) == 2


def test_reap_orphans_spares_an_earlier_instances_jobs(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=60), Fate(run_s=60)])
    old = _runner(tmp_path, fake)
    old.instance = "dead-daemon"
    spec = _spec(tmp_path, budget=30)
    threading.Thread(target=old.run, args=(spec, lambda _h: None), daemon=True).start()
    time.sleep(0.2)
    assert _runner(tmp_path, fake).reap_orphans() == 0 and not fake.cancels
    spec.cancel.set()


def test_local_runners_do_not_reattach(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    assert ProcessRunner.from_config(settings).reattach({"kind": "process"}, _spec(tmp_path)) is None


def test_runner_slurm_needs_an_absolute_shared_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"slurm\.shared_dir"):
        load_settings(tmp_path, runner="slurm")
    with pytest.raises(ConfigError, match="absolute"):
        load_settings(tmp_path, runner="slurm", slurm={"shared_dir": "rel/dir"})


def test_a_controller_down_at_submission_is_waited_out_and_submits_once(tmp_path: Path) -> None:
    fake = FakeSlurm([Fate(run_s=0.1)])
    fake.down = True
    threading.Timer(0.8, lambda: setattr(fake, "down", False)).start()
    outcome = _runner(tmp_path, fake).run(_spec(tmp_path), lambda _h: None)
    assert outcome.cause == "ok" and len(fake.submitted) == 1


def test_a_stop_while_the_controller_is_down_is_an_interruption(tmp_path: Path) -> None:
    fake = FakeSlurm()
    fake.down = True
    spec = _spec(tmp_path)
    threading.Timer(0.3, spec.cancel.set).start()
    outcome = _runner(tmp_path, fake).run(spec, lambda _h: None)
    assert outcome.cause == "interrupted" and not fake.submitted


def test_inner_docker_is_the_docker_runners_sandbox_killed_by_name(tmp_path: Path) -> None:
    from autoresearch.runners import slurm_job, slurm_script

    settings = _runner(tmp_path, FakeSlurm(), inner="docker").settings
    spec = _spec(tmp_path)
    line = slurm_script.command_line(settings, spec, None, {"AUTORESEARCH_RUN_OWNER": "rid"}, "ar-x-7-train-a1-abc")
    argv = line["argv"]
    assert argv[:4] == ["docker", "run", "--rm", "--init"] and line["container"] == "ar-x-7-train-a1-abc"
    for flag in (["--network", "none"], ["--cap-drop", "ALL"], ["--read-only"], ["--user", "65534:65534"]):
        assert any(argv[i:i + len(flag)] == flag for i in range(len(argv))), flag
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "--mount"]
    snap, output = spec.snapshot.resolve(), spec.output_dir.resolve()  # type: ignore[union-attr]
    assert f"type=bind,source={snap},target=/workspace,readonly" in mounts
    assert f"type=bind,source={snap / 'train.py'},target=/workspace/train.py" in mounts  # the target: writable
    assert f"type=bind,source={output},target=/output" in mounts
    assert "autoresearch.repo=rid" in argv and argv[-3:] == [settings.docker.image, "python3", "train.py"]
    job = {**line, "gpus": True}
    with_gpus = slurm_job.node_args(job, {"CUDA_VISIBLE_DEVICES": "1"})
    assert with_gpus[with_gpus.index("--init") + 1:][:2] == ["--gpus", "device=1"]
    assert slurm_job.node_args({**line, "gpus": False}, {"CUDA_VISIBLE_DEVICES": "1"}) == argv


def test_inner_bwrap_gets_the_jobs_gpus_on_the_node(tmp_path: Path) -> None:
    from autoresearch.runners import slurm_job, slurm_script

    settings = _runner(tmp_path, FakeSlurm()).settings
    line = slurm_script.command_line(settings, _spec(tmp_path), None, {"AUTORESEARCH_RUN_OWNER": "rid"}, "n")
    assert line["argv"][0] == "prlimit" and "bwrap" in line["argv"] and "--unshare-net" in line["argv"]
    # No owner mark: a daemon whose host is also a node must not reap a job's sandbox as its own leftover.
    assert not any("AUTORESEARCH_RUN_OWNER" in part for part in [*line["argv"], *line["env"]])
    argv = slurm_job.node_args({**line, "gpus": True}, {"CUDA_VISIBLE_DEVICES": "1"})
    at = argv.index("--chdir")
    assert argv[at - 3:at] == ["--setenv", "CUDA_VISIBLE_DEVICES", "1"]  # after the daemon host's value: it wins


def test_each_sessions_runs_get_their_own_shared_folder(tmp_path: Path) -> None:
    from autoresearch.runners.slurm_paths import link_state

    state, shared = tmp_path / "repo/.git/autoresearch", tmp_path / "shared"
    (state / "runs/0").mkdir(parents=True)
    (state / "runs/0/run.log").write_text("a local run\n")  # a session that ran locally before
    link_state(state, shared, "rid")
    first = (state / "runs").resolve()
    assert (state / "runs").is_symlink() and (first / "0/run.log").read_text() == "a local run\n"
    link_state(state, shared, "rid")
    assert (state / "runs").resolve() == first  # idempotent
    (state / "runs").rename(tmp_path / "archived-runs")  # what sessions.archive_active does to it
    link_state(state, shared, "rid")
    assert (state / "runs").resolve() != first and not list((state / "runs").iterdir())
    assert (tmp_path / "archived-runs/0/run.log").read_text() == "a local run\n"  # the archive keeps its logs
    assert (state / "home").resolve() == (shared / "rid/home").resolve()  # shared by the repo's sessions

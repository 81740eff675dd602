"""Wait, don't die: an engine that is down or a GPU that is missing or busy is waited out (with the
reason in status and in systemd's STATUS line), at start and before a run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from autoresearch.coordinator.loop import Loop
from autoresearch.errors import EngineUnavailable, GpuError
from autoresearch.journal.status import summarize
from autoresearch.runners.base import FakeRunner
from autoresearch.runners.gpu import FakeGpu, GpuDevice, select_devices
from tests.conftest import GIT_ENV, NO_REPEATS, cli, make_repo
from tests.loop_fakes import fake_loop, ok
from tests.subprocs import terminated

BUSY = GpuDevice(index=0, uuid="GPU-0", name="Fake H100", total_mb=81559.0, free_mb=300.0)
FREE = GpuDevice(index=0, uuid="GPU-0", name="Fake H100", total_mb=81559.0, free_mb=80000.0)


@dataclass
class GpuRunner(FakeRunner):
    """A fake runner that checks its GPU as the Docker runner does (``select_devices`` on a probe)."""

    gpu: FakeGpu = field(default_factory=FakeGpu)
    engine_down_checks: int = 0
    checks: int = 0
    statuses: list[dict[str, Any]] = field(default_factory=list)
    loop: Loop | None = None
    frees_after: int = 2

    def check(self) -> None:
        self.checks += 1
        if self.loop is not None:
            self.statuses.append(summarize(self.loop.journal.load(), "min"))
        if self.checks > self.frees_after:
            self.gpu.gpus = [FREE]
        if self.checks <= self.engine_down_checks:
            raise EngineUnavailable("Docker engine unreachable at unix:///nowhere: is dockerd running?")
        select_devices(self.gpu, "all", 1024.0)


def _loop(tmp_path: Path, runner: GpuRunner, experiments: int = 2) -> Loop:
    loop = fake_loop(tmp_path, [], limits={"max_experiments": experiments})
    loop.runner = runner
    loop.wait_max_s = 0.01
    runner.loop = loop
    runner.script = [ok(2.0), ok(1.0)]
    return loop


def _waits(runner: GpuRunner) -> list[Any]:
    return [s["waiting"] and (s["waiting"]["what"], s["waiting"]["reason"]) for s in runner.statuses]


def test_engine_down_at_start_is_waited_out(tmp_path: Path) -> None:
    runner = GpuRunner(gpu=FakeGpu([FREE]), engine_down_checks=2)
    loop = _loop(tmp_path, runner)
    with capture_logs() as logs:
        result = loop.run()
    assert result.exit_code == 0 and len(loop.journal.load().completed()) == 2
    reason = "Docker engine unreachable at unix:///nowhere: is dockerd running?"
    assert _waits(runner) == [None, ("engine", reason), ("engine", reason)]
    assert loop.notifier.sent[0].startswith("READY=1")  # READY first: an outage must not fail the start
    status = f"STATUS=waiting for the Docker engine: {reason}; 0 experiments; best val_bpb none; noise σ 0.000000"
    assert status in loop.notifier.sent
    assert [e["event"] for e in logs if e["event"].startswith("loop.wait")] == ["loop.waiting", "loop.wait_over"]
    assert loop.journal.load().waiting is None


def test_gpu_busy_at_start_is_waited_out(tmp_path: Path) -> None:
    runner = GpuRunner(gpu=FakeGpu([BUSY]))
    loop = _loop(tmp_path, runner)
    assert loop.run().exit_code == 0 and len(loop.journal.load().completed()) == 2
    busy = "GPU 0 (Fake H100) has only 300 MiB free"
    assert _waits(runner) == [None, ("gpu", busy), ("gpu", busy)]
    assert any(m.startswith(f"STATUS=waiting for a free GPU: {busy}") for m in loop.notifier.sent)


def test_gpu_missing_at_start_is_waited_out(tmp_path: Path) -> None:
    runner = GpuRunner(gpu=FakeGpu([]))
    loop = _loop(tmp_path, runner)
    assert loop.run().exit_code == 0 and len(loop.journal.load().completed()) == 2
    assert _waits(runner)[1] == ("gpu", "GPUs were requested but NVML reports none on this host")


def test_gpu_busy_before_a_run_is_waited_out_and_the_same_experiment_runs(tmp_path: Path) -> None:
    def busy(_spec: Any) -> Any:
        runner.gpu.gpus = [BUSY]  # taken by someone else between the check and the run
        raise GpuError("GPU 0 (Fake H100) has only 300 MiB free")

    runner = GpuRunner(gpu=FakeGpu([FREE]), frees_after=3)
    loop = _loop(tmp_path, runner)
    runner.script = [ok(2.0), busy, ok(1.0)]
    assert loop.run().exit_code == 0
    rows = (tmp_path / "results.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[3] for r in rows] == ["keep", "keep"]
    assert [s.n for s in runner.specs] == [0, 1, 1]  # the same experiment again; the busy try wrote no row
    assert any(m.startswith("STATUS=waiting for a free GPU") for m in loop.notifier.sent)


def test_a_stale_wait_of_a_killed_daemon_is_cleared_at_start(tmp_path: Path) -> None:
    runner = GpuRunner(gpu=FakeGpu([FREE]))
    loop = _loop(tmp_path, runner, experiments=1)
    loop.journal.append({"type": "wait", "what": "engine", "reason": "left by a kill -9"})
    loop.run()
    assert runner.statuses[0]["waiting"] is None and loop.journal.load().waiting is None


def test_stop_signal_ends_a_wait(tmp_path: Path) -> None:
    runner = GpuRunner(gpu=FakeGpu([BUSY]), frees_after=10**6)
    loop = _loop(tmp_path, runner)

    def stop_on_third_check() -> None:
        if runner.checks >= 3:
            loop.stop_event.set()

    original = runner.check

    def check() -> None:
        stop_on_third_check()
        original()

    runner.check = check  # type: ignore[method-assign]
    result = loop.run()
    assert result.reason == "signal" and loop.journal.load().completed() == []


BROKEN_AGENT = """\
import sys
from pathlib import Path
Path(sys.argv[1]).write_text("def broken(:\\n")
"""


def test_a_daemon_whose_agent_only_fails_shows_it_in_status_and_escalates(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "research", extra={"agent.py": BROKEN_AGENT})
    init = cli("init", str(repo), "--tag", "f", "--runner", "process", "--budget", "2")
    assert init.returncode == 0, init.stderr
    env = {**os.environ, **GIT_ENV, **NO_REPEATS, "AUTORESEARCH_AGENT": "command",
           "AUTORESEARCH_COMMAND_AGENT__COMMAND": f"{sys.executable} agent.py {{target}}",  # its checkout's copy
           "AUTORESEARCH_PROPOSALS__MAX_FAILED_IN_A_ROW": "2", "AUTORESEARCH_PROPOSALS__MAX_BACKOFF_S": "0.2"}
    daemon = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while (summary := _status(repo))["failed_proposals_in_a_row"] < 3:
            assert daemon.poll() is None and time.monotonic() < deadline, daemon.communicate()[1][-3000:]
            time.sleep(0.5)
    finally:
        out, err = terminated(daemon)
    assert daemon.returncode == 0, err[-3000:]
    assert summary["experiments"] == 1 and "train.py does not compile" in summary["last_proposal_error"]
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    skipped = [e for e in events if e["event"] == "proposal.skipped"]
    assert skipped[0]["level"] == "warning" and skipped[1]["level"] == "error" and skipped[1]["escalated"]


def _status(repo: Path) -> dict[str, Any]:
    result = cli("status", str(repo), "--json")
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary

"""A stopped slurmctld is waited out like a Docker engine that is down: READY is still sent, a ``wait``
record names it (status shows it), and the loop goes on once the controller is back. Against the real
test cluster: the controller is stopped for a few seconds and restarted in a ``finally``."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autoresearch.cli.slurm_status import annotate
from autoresearch.errors import SlurmUnavailable
from autoresearch.journal.status import summarize
from autoresearch.ops.config import load_settings
from autoresearch.runners import runner_from_config
from autoresearch.runners.base import FakeRunner
from autoresearch.runners.slurm_ops import SlurmCommands
from tests.cli.test_slurm_status import SUBMITTED, slurm_journal
from tests.loop_fakes import fake_loop, ok

SETUP = Path(__file__).resolve().parents[2] / ".ci" / "slurm-setup.sh"


@dataclass
class ControllerCheckedRunner(FakeRunner):
    """Fake runs, checked before each by ``probe``: the Slurm runner's own check."""

    probe: Callable[[], None] = field(default=lambda: None)

    def check(self) -> None:
        self.probe()


def slurm_runner_check(tmp_path: Path) -> Callable[[], None]:
    """The Slurm runner's ``check``, the real thing the loop waits on."""
    shared = tmp_path / "shared"
    shared.mkdir()
    settings = load_settings(tmp_path, runner="slurm", slurm={"shared_dir": str(shared)})
    return runner_from_config(settings, "slurm-wait-test", "test").check


def _controller_pid() -> int:
    pid_file = Path(os.environ.get("SLURM_CI_DIR", "/tmp/slurm-ci")) / "ctld.pid.mine"
    if not pid_file.exists():
        message = f"slurmctld was not started by .ci/slurm-setup.sh ({pid_file} missing): it is not ours to stop"
        if os.environ.get("AUTORESEARCH_REQUIRE_SLURM") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return int(pid_file.read_text())


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"slurmctld {pid} did not stop")


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slurm
@pytest.mark.slow
def test_a_stopped_slurmctld_is_waited_out(slurm_cluster: None, tmp_path: Path) -> None:
    loop = fake_loop(tmp_path / "repo", [], limits={"max_experiments": 1})
    loop.runner = ControllerCheckedRunner(script=[ok(1.0)], probe=slurm_runner_check(tmp_path))
    loop.wait_max_s = 1.0
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(loop.run()), daemon=True)
    _stop(_controller_pid())
    try:
        with pytest.raises(SlurmUnavailable):  # the real client's message is recognised as "down"
            SlurmCommands(timeout_s=20).jobs(["1"])
        # status meanwhile: what the journal last saw, and that the controller does not answer
        seen = slurm_journal(tmp_path / "seen.jsonl", {0: {"job_id": "7", "started_at": SUBMITTED + 2}}).load()
        summary = summarize(seen, "min")
        started = time.monotonic()
        annotate(summary, seen, SlurmCommands(timeout_s=20))
        assert time.monotonic() - started < 5, "scontrol ping answers at once: status does not hang"
        assert summary["lanes"][0]["job"]["state"] == "RUNNING?"
        assert str(summary["slurm"]).startswith("does not answer: scontrol: Slurmctld(primary)"), summary["slurm"]
        thread.start()
        _wait_for(lambda: loop.journal.load().waiting is not None, 60, "the wait record")
        waiting = summarize(loop.journal.load(), "min")["waiting"]
        assert waiting["what"] == "slurm" and "Slurmctld(primary)" in waiting["reason"] \
            and "DOWN" in waiting["reason"], waiting
        assert loop.notifier.sent[0].startswith("READY=1"), "READY first: an outage must not fail the start"
        assert any(m.startswith("STATUS=waiting for the Slurm controller (slurmctld): ")
                   for m in loop.notifier.sent), loop.notifier.sent
        assert loop.journal.load().completed() == [], "nothing runs while the controller is down"
    finally:
        subprocess.run(["bash", str(SETUP), "start"], check=True, timeout=120, capture_output=True)
    thread.join(120)
    assert not thread.is_alive() and result and getattr(result[0], "exit_code", None) == 0, result
    state = loop.journal.load()
    assert state.waiting is None and len(state.completed()) == 1
    assert [w.what for w in state.waits] == ["slurm", None]

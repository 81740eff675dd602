"""The process runner against real processes, sandboxed (bwrap) and bare: budgets, trees, signals, caps."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from autoresearch.errors import ConfigError, RunnerError
from autoresearch.ops.config import Settings
from autoresearch.runners import procs
from autoresearch.runners.process import ProcessRunner
from tests.runners.process_helpers import make_runner, make_spec, marked_pids, token
from tests.subprocs import reaped

MODES = ["bwrap", "none"]


@pytest.mark.parametrize("mode", MODES)
def test_ok_run_streams_log_and_sets_budget(tmp_path: Path, mode: str) -> None:
    handles: list[dict[str, Any]] = []
    script = "import os\nprint('budget', os.environ['AUTORESEARCH_TIME_BUDGET'])\nprint('val_bpb: 1.5')\n"
    spec = make_spec(tmp_path, script)
    out = make_runner(mode).run(spec, handles.append)
    assert out.cause == "ok" and out.exit_code == 0
    assert "budget 0.5" in spec.log_path.read_text()
    assert handles[0]["kind"] == "process" and handles[0]["start_ticks"]
    assert ("init_pid" in handles[0]) == (mode == "bwrap")


@pytest.mark.parametrize("mode", MODES)
def test_exit_code_and_secret_env_hidden(tmp_path: Path, monkeypatch: Any, mode: str) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-xyzzy1")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-xyzzy2")
    spec = make_spec(tmp_path, "import os, sys\nprint(sorted(os.environ.items()))\nsys.exit(3)\n")
    out = make_runner(mode).run(spec, lambda h: None)
    assert out.cause == "exit:3"
    assert "xyzzy" not in spec.log_path.read_text()


@pytest.mark.parametrize("mode", MODES)
def test_budget_ignorer_is_killed_at_budget_plus_grace(tmp_path: Path, mode: str) -> None:
    spec = make_spec(tmp_path, "import time\nwhile True: time.sleep(0.1)\n", budget=0.5, grace=0.5)
    t0 = time.monotonic()
    out = make_runner(mode).run(spec, lambda h: None)
    assert out.cause == "timeout"
    assert time.monotonic() - t0 >= 1.0
    assert out.kill_latency_s is not None


@pytest.mark.parametrize("mode", MODES)
def test_forked_children_die_with_the_run(tmp_path: Path, mode: str) -> None:
    mark = token()
    script = (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', '{mark}'])\n"
        "time.sleep(0.5)\n"
        "print('parent exits, children linger', flush=True)\n"
    )
    out = make_runner(mode).run(make_spec(tmp_path, script, budget=5), lambda h: None)
    assert out.cause == "ok"
    assert procs.wait_gone(lambda: marked_pids(mark), 5.0)


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_ignorer_is_sigkilled(tmp_path: Path, mode: str) -> None:
    script = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('started', flush=True)\nwhile True: time.sleep(0.1)\n"
    )
    spec = make_spec(tmp_path, script, budget=1.5, grace=0.5)
    out = make_runner(mode).run(spec, lambda h: None)
    assert out.cause == "timeout" and "started" in spec.log_path.read_text()
    assert out.kill_latency_s is not None and out.kill_latency_s >= 1.0  # SIGTERM was ignored for kill_timeout_s


def test_sigterm_reaches_the_script_in_the_sandbox(tmp_path: Path) -> None:
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('got SIGTERM', flush=True), sys.exit(0)))\n"
        "while True: time.sleep(0.05)\n"
    )
    spec = make_spec(tmp_path, script, budget=0.5, grace=0.2)
    out = make_runner("bwrap", kill_timeout_s=20.0).run(spec, lambda h: None)
    assert out.cause == "timeout"
    assert out.kill_latency_s is not None and out.kill_latency_s < 20.0  # it ended on SIGTERM, not SIGKILL


@pytest.mark.parametrize("mode", MODES)
def test_cancel_interrupts(tmp_path: Path, mode: str) -> None:
    spec = make_spec(tmp_path, "import time\ntime.sleep(30)\n", budget=30, grace=30)
    threading.Timer(0.3, spec.cancel.set).start()
    out = make_runner(mode).run(spec, lambda h: None)
    assert out.cause == "interrupted" and out.wall_s < 25


def test_log_cap(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "import sys\nfor _ in range(2000): sys.stdout.write('x' * 1000 + '\\n')\n", cap=10_000)
    out = make_runner().run(spec, lambda h: None)
    assert out.cause == "ok" and out.log_truncated
    assert spec.log_path.stat().st_size < 11_000


@pytest.mark.parametrize("mode", MODES)
def test_readonly_or_target_write_is_a_violation(tmp_path: Path, mode: str) -> None:
    script = "open('train.py', 'a').write('# edited\\n')\nprint('val_bpb: 0.1')\n"
    out = make_runner(mode).run(make_spec(tmp_path, script), lambda h: None)
    assert out.cause == "violation" and "train.py" in out.detail


def test_readonly_file_cannot_be_written_in_the_sandbox(tmp_path: Path) -> None:
    script = "open('prepare.py', 'w').write('hacked')\n"
    spec = make_spec(tmp_path, script)
    out = make_runner().run(spec, lambda h: None)
    assert out.cause == "exit:1" and "Read-only file system" in spec.log_path.read_text()
    assert (tmp_path / "snapshot" / "prepare.py").read_text() == "X = 1\n"


def test_timed_out_violation_is_a_violation(tmp_path: Path) -> None:
    """One classification for both runners: a changed file wins over the timeout."""
    script = "import time\nopen('train.py', 'a').write('#')\nwhile True: time.sleep(0.1)\n"
    out = make_runner().run(make_spec(tmp_path, script), lambda h: None)
    assert out.cause == "violation"


def test_output_and_cache_mounts(tmp_path: Path) -> None:
    script = (
        "import os\nopen(os.environ['AUTORESEARCH_OUTPUT'] + '/model.bin', 'w').write('weights')\n"
        "print(open(os.environ['AUTORESEARCH_CACHE'] + '/data.txt').read())\n"
        "try:\n    open(os.environ['AUTORESEARCH_CACHE'] + '/new', 'w')\nexcept OSError as e:\n    print('cache', e)\n"
    )
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "data.txt").write_text("DATA")
    spec = make_spec(tmp_path, script, output_dir=tmp_path / "out", cache_dir=tmp_path / "cache")
    out = make_runner().run(spec, lambda h: None)
    text = spec.log_path.read_text()
    assert out.cause == "ok", text
    assert "DATA" in text and "Read-only file system" in text
    assert (tmp_path / "out" / "model.bin").read_text() == "weights"


def test_a_run_without_a_snapshot_is_refused(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "print(1)\n", snapshot=None)
    with pytest.raises(RunnerError, match="snapshot"):
        make_runner().run(spec, lambda h: None)


def test_reap_kills_a_bare_group_left_by_a_dead_daemon() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import os, time\nos.fork()\ntime.sleep(60)\n"],
                            start_new_session=True)
    with reaped(proc, group=True):  # the group dies even if reap fails
        time.sleep(0.3)
        handle = {"kind": "process", "pgid": proc.pid, "start_ticks": procs.start_ticks(proc.pid)}
        runner = make_runner("none")
        assert runner.reap({**handle, "start_ticks": -1}) is False  # a recycled PID is never signalled
        assert runner.reap(handle) is True
        proc.wait(timeout=5)


def test_config_refuses_a_missing_bwrap_and_warns_when_unsandboxed(monkeypatch: Any) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="bubblewrap"):
        ProcessRunner.from_config(Settings())
    with capture_logs() as logs:
        runner = ProcessRunner.from_config(Settings(process={"sandbox": "none", "gpus": "none"}))
    assert runner.bwrap is None
    assert any(e["event"] == "process.unsandboxed" and e["log_level"] == "warning" for e in logs)


def test_unsandboxed_setsid_child_holding_stdout_does_not_hang_the_run(tmp_path: Path) -> None:
    """Without a sandbox the escaped child survives (documented as unsafe), but the log pump lets go of it."""
    mark = token()
    script = f"import subprocess\nsubprocess.Popen(['setsid', 'sleep', '{mark}'])\nprint('leader done', flush=True)\n"
    try:
        out = make_runner("none").run(make_spec(tmp_path, script, budget=60), lambda h: None)
        assert out.cause == "ok" and out.wall_s < 60
    finally:
        for pid in marked_pids(mark):
            procs.signal_pid(pid, signal.SIGKILL)

"""The process runner against real processes: budgets, process trees, signals, caps, violations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from autoresearch.gpu import NoGpu
from autoresearch.runners.base import RunSpec
from autoresearch.runners.process import ProcessRunner


def _spec(tmp_path: Path, script: str, budget: float = 0.5, grace: float = 0.5, **kw: Any) -> RunSpec:
    (tmp_path / "train.py").write_text(script)
    (tmp_path / "prepare.py").write_text("X = 1\n")
    return RunSpec(
        n=1,
        kind="train",
        command=f"{sys.executable} train.py",
        workdir=tmp_path,
        budget=budget,
        grace=grace,
        env={"AUTORESEARCH_TIME_BUDGET": str(budget)},
        log_path=tmp_path / "run.log",
        log_cap_bytes=kw.pop("cap", 1 << 20),
        target="train.py",
        readonly=("prepare.py",),
        **kw,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


RUNNER = ProcessRunner(gpu=NoGpu(), kill_timeout_s=1.0)


def test_ok_run_streams_log_and_sets_budget(tmp_path: Path) -> None:
    handles: list[dict[str, Any]] = []
    script = "import os\nprint('budget', os.environ['AUTORESEARCH_TIME_BUDGET'])\nprint('val_bpb: 1.5')\n"
    spec = _spec(tmp_path, script)
    out = RUNNER.run(spec, handles.append)
    assert out.cause == "ok" and out.exit_code == 0
    assert "budget 0.5" in spec.log_path.read_text()
    assert handles[0]["kind"] == "process" and handles[0]["start_ticks"]


def test_exit_code_and_secret_env_hidden(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-secret")
    spec = _spec(tmp_path, "import os, sys\nprint(os.environ.get('ANTHROPIC_API_KEY'))\nsys.exit(3)\n")
    out = RUNNER.run(spec, lambda h: None)
    assert out.cause == "exit:3"
    assert "sk-secret" not in spec.log_path.read_text()


def test_budget_ignorer_is_killed_at_budget_plus_grace(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "import time\nwhile True: time.sleep(0.1)\n", budget=0.5, grace=0.5)
    t0 = time.monotonic()
    out = RUNNER.run(spec, lambda h: None)
    elapsed = time.monotonic() - t0
    assert out.cause == "timeout"
    assert 1.0 <= elapsed < 3.0, elapsed
    assert out.kill_latency_s is not None and out.kill_latency_s < 1.0


def test_forked_children_die_with_the_run(tmp_path: Path) -> None:
    script = (
        "import os, time\n"
        "r, w = os.pipe()\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os.write(1, f'child {os.getpid()}\\n'.encode())\n"  # one write: lines do not interleave
        "        os.write(w, b'x')\n"
        "        time.sleep(60)\n"
        "        os._exit(0)\n"
        "got = b''\n"
        "while len(got) < 3: got += os.read(r, 3)\n"  # all children are up and printed
        "print('parent exits, children linger', flush=True)\n"
    )
    spec = _spec(tmp_path, script)
    out = RUNNER.run(spec, lambda h: None)
    children = [int(line.split()[1]) for line in spec.log_path.read_text().splitlines() if line.startswith("child")]
    assert out.cause == "ok" and len(children) == 3
    time.sleep(0.2)
    assert not any(_alive(pid) for pid in children)


def test_sigterm_ignorer_is_sigkilled(tmp_path: Path) -> None:
    script = (
        "import os, signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('pid', os.getpid(), flush=True)\nwhile True: time.sleep(0.1)\n"
    )
    spec = _spec(tmp_path, script, budget=1.5, grace=0.5)
    out = RUNNER.run(spec, lambda h: None)
    assert out.cause == "timeout"
    pid = int(spec.log_path.read_text().split()[1])
    assert not _alive(pid)
    assert out.kill_latency_s is not None and out.kill_latency_s >= 1.0  # SIGTERM was ignored for kill_timeout_s


def test_cancel_interrupts(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "import time\ntime.sleep(30)\n", budget=30, grace=30)
    threading.Timer(0.3, spec.cancel.set).start()
    out = RUNNER.run(spec, lambda h: None)
    assert out.cause == "interrupted" and out.wall_s < 5


def test_log_cap(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "import sys\nfor _ in range(2000): sys.stdout.write('x' * 1000 + '\\n')\n", cap=10_000)
    out = RUNNER.run(spec, lambda h: None)
    assert out.cause == "ok" and out.log_truncated
    assert spec.log_path.stat().st_size < 11_000


def test_readonly_write_is_a_violation(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "open('prepare.py', 'w').write('hacked')\nprint('val_bpb: 0.1')\n")
    out = RUNNER.run(spec, lambda h: None)
    assert out.cause == "violation" and "prepare.py" in out.detail


def test_reap_kills_a_group_left_by_a_dead_daemon(tmp_path: Path) -> None:
    # A stand-in for the daemon's run: a session leader with a child, then "the daemon dies".
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os, time\nos.fork()\ntime.sleep(60)\n"], start_new_session=True
    )
    time.sleep(0.3)
    from autoresearch.runners.process import _start_ticks

    handle = {"kind": "process", "pgid": proc.pid, "start_ticks": _start_ticks(proc.pid)}
    assert RUNNER.reap({**handle, "start_ticks": -1}) is False  # a recycled PID is never signalled
    assert RUNNER.reap(handle) is True
    proc.wait(timeout=5)
    assert proc.returncode == -signal.SIGKILL

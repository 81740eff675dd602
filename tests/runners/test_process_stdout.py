"""The process runner keeps stdout apart (for the metric) and stops copying it at the deadline."""

from __future__ import annotations

import sys
from pathlib import Path

from autoresearch.gpu import NoGpu
from autoresearch.judge import last_value
from autoresearch.runners.base import RunSpec
from autoresearch.runners.process import ProcessRunner

SCRIPT = """\
import sys, time
print("val_bpb: 2.0", flush=True)
print("val_bpb: 0.001", file=sys.stderr, flush=True)
time.sleep(float(sys.argv[1]))
print("val_bpb: 0.5", flush=True)
"""


def _run(tmp_path: Path, sleep: float, budget: float) -> tuple[str, str, str]:
    (tmp_path / "train.py").write_text(SCRIPT)
    spec = RunSpec(n=1, kind="train", command=f"{sys.executable} train.py {sleep}", workdir=tmp_path, budget=budget,
                   grace=0.0, env={}, log_path=tmp_path / "run.log", log_cap_bytes=1 << 20, target="train.py",
                   stdout_path=tmp_path / "stdout.log")
    outcome = ProcessRunner(gpu=NoGpu(), kill_timeout_s=5.0).run(spec, lambda _h: None)
    return outcome.cause, (tmp_path / "stdout.log").read_text(), (tmp_path / "run.log").read_text()


def test_stderr_reaches_the_log_but_not_stdout(tmp_path: Path) -> None:
    cause, stdout, log = _run(tmp_path, 0.0, 30.0)
    assert cause == "ok"
    assert "val_bpb: 0.001" in log and "val_bpb: 0.001" not in stdout
    assert last_value(stdout, "val_bpb") == 0.5


def test_lines_after_the_deadline_are_not_in_stdout(tmp_path: Path) -> None:
    cause, stdout, _ = _run(tmp_path, 30.0, 1.0)
    assert cause == "timeout"
    assert last_value(stdout, "val_bpb") == 2.0

"""The process runner keeps stdout apart (for the metric) and stops copying it at the deadline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from autoresearch.judging.judge import last_value
from tests.runners.process_helpers import make_runner, make_spec

SCRIPT = """\
import sys, time
print("val_bpb: 2.0", flush=True)
print("val_bpb: 0.001", file=sys.stderr, flush=True)
time.sleep(float(sys.argv[1]))
print("val_bpb: 0.5", flush=True)
"""
MODES = ["bwrap", "none"]


def _run(tmp_path: Path, mode: str, sleep: float, budget: float) -> tuple[str, str, str]:
    stdout_path = tmp_path / "run" / "stdout.log"
    spec = make_spec(tmp_path, SCRIPT, budget=budget, grace=0.0, command=f"{sys.executable} train.py {sleep}",
                     stdout_path=stdout_path)
    outcome = make_runner(mode).run(spec, lambda _h: None)
    return outcome.cause, stdout_path.read_text(), spec.log_path.read_text()


@pytest.mark.parametrize("mode", MODES)
def test_stderr_reaches_the_log_but_not_stdout(tmp_path: Path, mode: str) -> None:
    cause, stdout, log = _run(tmp_path, mode, 0.0, 30.0)
    assert cause == "ok"
    assert "val_bpb: 0.001" in log and "val_bpb: 0.001" not in stdout
    assert last_value(stdout, "val_bpb") == 0.5


@pytest.mark.parametrize("mode", MODES)
def test_lines_after_the_deadline_are_not_in_stdout(tmp_path: Path, mode: str) -> None:
    cause, stdout, _ = _run(tmp_path, mode, 30.0, 1.0)
    assert cause == "timeout"
    assert last_value(stdout, "val_bpb") == 2.0

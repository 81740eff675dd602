"""Tests behave under job control: run as a background job (``pytest &`` in a script), where SIGINT is
ignored, the interrupt test still passes and leaves no process behind (issue 16, item 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.subprocs import reaped

ROOT = Path(__file__).resolve().parents[2]
TEST = "tests/agents/test_fake_messages.py::test_command_line_serves_until_interrupted"
SERVER = b"autoresearch.agents.fake_messages"


def _servers() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and SERVER in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def test_the_interrupt_test_passes_as_a_background_job() -> None:
    before = _servers()
    probe = f"{sys.executable} -c 'import signal; print(\"sigint\", signal.getsignal(signal.SIGINT) == signal.SIG_IGN)'"
    script = f"{probe} & wait $!; {sys.executable} -m pytest {TEST} -q -p no:cacheprovider & wait $!"
    with reaped(subprocess.Popen(["bash", "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True), group=True) as job:
        out, _ = job.communicate(timeout=120)
    assert "sigint True" in out, "the background job should start with SIGINT ignored (else this test proves nothing)"
    assert job.returncode == 0, out[-3000:]
    assert "1 passed" in out
    assert not _servers() - before, "the test left its server running"

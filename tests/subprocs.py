"""Child processes that behave under job control: a test run as a background job (``pytest &`` in a
script, CI runners) starts with SIGINT and SIGQUIT ignored, and its children inherit that. So tests
reset SIGINT in a child they mean to interrupt, and kill whatever they started when they fail."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any


def interruptible() -> None:
    """``preexec_fn``: SIGINT back to its default in the child, so Python there raises KeyboardInterrupt
    (an ignored SIGINT survives exec, and Python then installs no handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def reaped(proc: subprocess.Popen[Any], group: bool = False) -> Iterator[subprocess.Popen[Any]]:
    """Whatever happens in the block, the process (its whole group with ``group``) is gone after it:
    SIGKILL, which nothing ignores, then a wait."""
    try:
        yield proc
    finally:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def terminated(proc: subprocess.Popen[Any], timeout: float = 60) -> tuple[Any, Any]:
    """SIGTERM (never ignored by job control), then the output; a process still running after ``timeout``
    is killed and the TimeoutExpired goes on to fail the test."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise

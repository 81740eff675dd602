"""Helpers for the dashboard's tests: ``autoresearch serve`` and the daemon as real subprocesses,
always stopped (and killed if need be) when a test ends."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import GIT_ENV, NO_REPEATS, cli, make_repo


@dataclass
class Served:
    proc: subprocess.Popen[str]
    url: str
    output: list[str]

    def log(self) -> str:
        """Everything it printed so far (stdout and stderr)."""
        return "".join(self.output)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, **NO_REPEATS, **(extra or {})}


def stop(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def serving(repo: Path, *args: str, env: dict[str, str] | None = None, listen: str = "127.0.0.1:0") -> Iterator[Served]:
    """``autoresearch serve`` on a free port; yields once it printed its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "serve", str(repo), "--listen", listen, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(env))
    output: list[str] = []
    started = threading.Event()

    def read() -> None:  # everything it prints is read at once, so a full pipe never blocks it
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if "dashboard: " in line:
                started.set()
        started.set()  # it exited

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        started.wait(60)
        match = re.search(r"dashboard: (http://\S+/)", "".join(output))
        if match is None:
            raise AssertionError(f"serve did not start (exit {proc.poll()}):\n{''.join(output)}")
        yield Served(proc, match.group(1).replace("0.0.0.0", "127.0.0.1"), output)
    finally:
        stop(proc)
        reader.join(10)


@contextlib.contextmanager
def daemon(repo: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """``autoresearch run`` in the background; SIGTERM (then SIGKILL) when the test is done."""
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(env))
    try:
        yield proc
    finally:
        stop(proc, timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()


def recorded_session(folder: Path, tag: str, experiments: int) -> Path:
    """A fast research repo whose daemon recorded ``experiments`` experiments and stopped."""
    repo = make_repo(folder / "research")
    assert cli("init", str(repo), "--tag", tag, "--runner", "process", "--budget", "5").returncode == 0
    run = cli("run", str(repo), "--max-experiments", str(experiments))
    assert run.returncode == 0, run.stderr[-2000:]
    return repo

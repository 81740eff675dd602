"""Runs an experiment as a local process group, on the daemon's own clock.

The command runs through the shell in its own session (so its process group holds every child a
data loader forks), with the daemon's interpreter first on PATH. At budget + grace the group gets
SIGTERM, then SIGKILL after ``kill_timeout_s``; after any exit the group is SIGKILLed so no
straggler survives. The handle (pgid + kernel start time) lets a restarted daemon reap a run whose
daemon died with ``kill -9``, without ever signalling a recycled PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from autoresearch.config import Settings
from autoresearch.gpu import GpuProbe, NoGpu, PeakSampler, probe_from_environment
from autoresearch.runners.base import CappedLog, OnStarted, RunOutcome, RunSpec

log = structlog.get_logger("autoresearch.runner.process")

# Variables a training script never needs and must never see.
SECRET_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


OWNER_ENV = "AUTORESEARCH_RUN_OWNER"
"""Set in every run's environment to the repo id, so a restarted daemon can find a run it never journaled."""


@dataclass
class ProcessRunner:
    gpu: GpuProbe
    repo_id: str = ""
    kill_timeout_s: float = 5.0
    poll_s: float = 0.05
    name: str = "process"

    @classmethod
    def from_config(cls, settings: Settings, repo_id: str = "", instance: str = "") -> ProcessRunner:
        return cls(gpu=probe_from_environment(), repo_id=repo_id, kill_timeout_s=settings.docker.stop_timeout_s)

    def check(self) -> None:
        return None

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        before = _hashes(spec.workdir, (spec.target, *spec.readonly))
        started = time.monotonic()
        proc = subprocess.Popen(
            spec.command,
            shell=True,
            cwd=spec.workdir,
            env=_environment({**spec.env, OWNER_ENV: self.repo_id} if self.repo_id else spec.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if spec.stdout_path else subprocess.STDOUT,
            start_new_session=True,
        )
        pgid = proc.pid
        on_started({"kind": "process", "pgid": pgid, "start_ticks": _start_ticks(pgid)})
        with CappedLog(spec.log_path, spec.log_cap_bytes) as sink:
            stdout = proc.stdout
            assert isinstance(stdout, io.BufferedReader)
            deadline = started + spec.deadline_s
            pumps = [threading.Thread(target=sink.pump, args=(_tee(stdout, spec.stdout_path, deadline),))]
            if proc.stderr is not None:
                pumps.append(threading.Thread(target=sink.pump, args=(_tee(proc.stderr, None, deadline),)))
            for pump in pumps:
                pump.start()
            sampler = None if isinstance(self.gpu, NoGpu) else PeakSampler(self.gpu, lambda: _group_pids(pgid))
            if sampler is not None:
                sampler.start()
            stopped_for = self._wait(proc, spec, started)
            latency = self._terminate(proc, pgid) if stopped_for else None
            _kill_group(pgid)  # stragglers: forked workers that outlived the leader
            for pump in pumps:
                pump.join(timeout=5)
            stdout.close()
            if proc.stderr is not None:
                proc.stderr.close()
            peak_mb = sampler.stop() if sampler is not None else None
        wall = time.monotonic() - started
        cause = stopped_for or _cause(proc.returncode)
        detail = ""
        changed = [p for p, h in _hashes(spec.workdir, (spec.target, *spec.readonly)).items() if before.get(p) != h]
        if changed and cause not in ("timeout", "interrupted"):
            cause, detail = "violation", "changed during the run: " + ", ".join(changed)
        if latency is not None:
            log.info("run.killed", n=spec.n, reason=stopped_for, kill_latency_s=round(latency, 3))
        return RunOutcome(
            cause=cause,
            exit_code=proc.returncode,
            wall_s=wall,
            kill_latency_s=latency,
            peak_memory_gb=None if not peak_mb else peak_mb / 1024,
            gpu_count=len(self.gpu.devices()) if sampler is not None else 0,
            detail=detail,
            log_truncated=sink.truncated,
        )

    def _wait(self, proc: subprocess.Popen[bytes], spec: RunSpec, started: float) -> str | None:
        """Wait for exit; return 'timeout' or 'interrupted' if the daemon has to stop it."""
        deadline = started + spec.deadline_s
        while proc.poll() is None:
            if spec.cancel.is_set():
                return "interrupted"
            if time.monotonic() >= deadline:
                return "timeout"
            spec.cancel.wait(self.poll_s)
        return None

    def _terminate(self, proc: subprocess.Popen[bytes], pgid: int) -> float:
        """SIGTERM the group, SIGKILL whatever is left after the timeout; returns the seconds until all are gone."""
        t0 = time.monotonic()
        _signal_group(pgid, signal.SIGTERM)
        while _group_pids(pgid, reap=proc) and time.monotonic() - t0 < self.kill_timeout_s:
            time.sleep(self.poll_s)
        if _group_pids(pgid, reap=proc):
            _signal_group(pgid, signal.SIGKILL)
            while _group_pids(pgid, reap=proc) and time.monotonic() - t0 < self.kill_timeout_s + 10:
                time.sleep(self.poll_s)
        proc.wait()
        return time.monotonic() - t0

    def reap(self, handle: dict[str, Any]) -> bool:
        pgid = int(handle.get("pgid", 0))
        if pgid <= 0 or _start_ticks(pgid) != handle.get("start_ticks"):
            return False  # gone, or the PID now belongs to someone else
        _kill_group(pgid)
        return True

    def reap_orphans(self) -> int:
        """Kill every process that carries this repo's owner mark: runs of a daemon that died, including one
        killed between starting a run and journaling its handle."""
        if not self.repo_id:
            return 0
        mark = f"{OWNER_ENV}={self.repo_id}".encode()
        killed = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in environ:
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
                except (ProcessLookupError, PermissionError):
                    continue
        return killed


def _tee(stream: Any, copy: Path | None, deadline: float) -> Iterator[bytes]:
    """The stream's chunks for the log; stdout also goes to ``copy``, but only what came before the deadline."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(copy.open("wb")) if copy is not None else None
        for chunk in iter(lambda: stream.read1(65536), b""):
            if out is not None and time.monotonic() < deadline:
                out.write(chunk)
                out.flush()
            yield chunk


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    # The daemon's own interpreter (its venv) first, so `python3 train.py` finds torch where it is.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _cause(returncode: int) -> str:
    if returncode == 0:
        return "ok"
    if returncode < 0:
        return f"signal:{-returncode}"
    return f"exit:{returncode}"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _group_pids(pgid: int, reap: subprocess.Popen[bytes] | None = None) -> set[int]:
    """Live (non-zombie) members of a process group, from /proc."""
    if reap is not None:
        reap.poll()  # collect our own child, so it does not linger as a zombie member
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.add(int(entry.name))
    return pids


def _hashes(root: Path, paths: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for rel in paths:
        try:
            out[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except OSError:
            out[rel] = "missing"
    return out

"""The Runner interface, its data, the capped log writer every runner uses, and a fake."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol

from autoresearch.ops.guards import no_beat

# Exit causes, as recorded in the journal and shown in a row's description:
#   ok, exit:<code>, signal:<n>, timeout, oom, violation, docker, interrupted
OnStarted = Callable[[dict[str, Any]], None]
RunKind = Literal["train", "prepare", "evaluate", "check", "setup"]
"""train: the experiment; prepare: init's data step (cache writable); evaluate: the trusted evaluator
(no target code, eval data visible); check: the repo's own checks after a would-be keep; setup: builds
the repo's environment (with the network; the environment and the home writable)."""
OUTPUT_MOUNT = "/output"
EVAL_MOUNT = "/eval"
HEARTBEAT_EVERY_S = 30.0
"""A runner calls ``RunSpec.heartbeat`` at least this often while a run is queued or running."""


@dataclass(frozen=True)
class RunSpec:
    """Everything a runner needs for one run."""

    n: int
    kind: RunKind
    command: str
    workdir: Path
    """The repo's working tree, checked out at the commit under test."""
    budget: float
    grace: float
    env: dict[str, str]
    log_path: Path
    log_cap_bytes: int
    target: str
    readonly: tuple[str, ...] = ()
    cache_dir: Path | None = None
    commit: str | None = None
    snapshot: Path | None = None
    """The commit's files only (``Workspace.export``: no .git, nothing untracked), made by the loop for
    this run and removed after it. Runners run from here, never from ``workdir``."""
    output_dir: Path | None = None
    """The run's output folder, at /output inside the sandbox (``AUTORESEARCH_OUTPUT``): writable for
    ``train``; for ``evaluate`` and ``check`` it is the training run's output, mounted read-only."""
    eval_data: Path | None = None
    """Evaluation data at /eval (``AUTORESEARCH_EVAL_DATA``): read-only for ``evaluate``, writable for
    ``prepare`` (which writes the held-out split); the training sandbox never sees it."""
    stdout_path: Path | None = None
    """Where the runner also writes the run's stdout alone (stderr goes to ``log_path`` only), and only what
    was printed before the deadline: the metric is read from here (``metric_source = "stdout"``). A runner
    that cannot separate the streams leaves it absent; the metric is then read from the whole log."""
    home: Path | None = None
    """The session's persistent home (``HOME`` inside): read-write for setup and prepare, else read-only
    under a throwaway per-run layer (``runners.home``). None: a throwaway HOME, as before sessions had one."""
    env_dir: Path | None = None
    """The repo's environment (built by ``setup``), at ``/workspace/.venv`` inside: writable for setup
    only. None: the repo has no environment of its own (runs use the daemon's interpreter)."""
    cancel: threading.Event = field(default_factory=threading.Event)
    """Set by the loop on SIGTERM/SIGINT: the runner stops the run and reports ``interrupted``."""
    heartbeat: Callable[[], None] = no_beat
    """Called by a runner at least every 30 s (``HEARTBEAT_EVERY_S``) while the run is queued or running, from
    any thread: the lane's watchdog heart (``guards.Heartbeats``), so a long wait for a GPU or in a cluster's
    queue is not taken for a hung lane."""

    @property
    def deadline_s(self) -> float:
        return self.budget + self.grace


@dataclass
class RunOutcome:
    cause: str
    exit_code: int | None = None
    wall_s: float = 0.0
    kill_latency_s: float | None = None
    """Seconds from the first stop signal to the run being gone (timeouts and interruptions)."""
    peak_memory_gb: float | None = None
    """Measured by the runner (NVML on a GPU, the container's peak without); None = not measured."""
    gpu_count: int = 0
    detail: str = ""
    log_truncated: bool = False
    queued_s: float | None = None
    """Seconds the run waited in a cluster's queue before it started (not counted in its budget); None
    for local runners."""

    @property
    def ok(self) -> bool:
        return self.cause == "ok"


class Runner(Protocol):
    name: str

    def check(self) -> None:
        """Fail fast (with a clear message) if runs cannot work: engine down, image missing."""

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        """Run to completion or to the deadline. ``on_started`` receives the handle to journal."""

    def reap(self, handle: dict[str, Any]) -> bool:
        """Kill what a crashed daemon left behind under ``handle``; True if something was killed."""

    def reattach(
        self, handle: dict[str, Any], spec: RunSpec, on_started: OnStarted | None = None,
    ) -> RunOutcome | None:
        """Take up a run a killed daemon left under ``handle`` (a Slurm job goes on without the daemon):
        wait for it as ``run`` would and return its outcome; None when the run cannot be taken up (a
        local run died with its daemon): it is then reaped and recorded ``interrupted``. ``on_started``
        journals the handle again when it changes (the job started, or was submitted again)."""

    def reap_orphans(self) -> int:
        """Kill every leftover this runner can find for this repo; returns how many."""


TRUNCATION_NOTICE = b"\n[autoresearch: log cap reached; further output dropped]\n"


class CappedLog:
    """Append-only run log with a size cap, flushed per chunk so ``tail -f`` follows it."""

    def __init__(self, path: Path, cap_bytes: int) -> None:
        self.path = path
        self.cap = cap_bytes
        self.written = 0
        self.truncated = False
        self._fh: BinaryIO | None = None
        self._lock = threading.Lock()  # stdout and stderr may be pumped by two threads

    def __enter__(self) -> CappedLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self._write(chunk)

    def _write(self, chunk: bytes) -> None:
        assert self._fh is not None, "CappedLog used outside its with-block"
        if not chunk or self.truncated:
            return
        room = self.cap - self.written
        if len(chunk) > room:  # also when the previous chunk filled the log exactly
            self.truncated = True
            chunk = chunk[: max(room, 0)] + TRUNCATION_NOTICE
        self._fh.write(chunk)
        self._fh.flush()
        self.written += len(chunk)

    def pump(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)


def log_tail(path: Path, max_bytes: int = 4000) -> str:
    """The end of a run log (what an agent sees of a crash)."""
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        return fh.read().decode("utf-8", errors="replace")


@dataclass
class FakeRunner:
    """A runner for tests: writes scripted output to the log and returns scripted outcomes.

    Each script entry is ``(stdout_text, cause)`` or ``(stdout_text, cause, extra)`` with ``extra`` keys
    ``stderr`` (text for the log only) and ``memory_gb`` (the measured peak); a callable entry gets the
    spec and returns one. Evaluate and check runs take entries from the same script.
    """

    script: list[Any] = field(default_factory=list)
    name: str = "fake"
    delay_s: float = 0.0
    specs: list[RunSpec] = field(default_factory=list)
    reaped: list[dict[str, Any]] = field(default_factory=list)

    def check(self) -> None:
        return None

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        self.specs.append(spec)
        entry = self.script.pop(0) if self.script else ("val_bpb: 1.0\n", "ok")
        if callable(entry):
            entry = entry(spec)  # may raise, as a real runner does before anything started
        on_started({"kind": "fake", "n": spec.n})
        text, cause, extra = (*entry, {})[:3]
        started = time.monotonic()
        if spec.cancel.wait(self.delay_s) if self.delay_s else spec.cancel.is_set():
            cause = "interrupted"
        with CappedLog(spec.log_path, spec.log_cap_bytes) as log:
            log.write((text + extra.get("stderr", "")).encode())
        if spec.stdout_path is not None:
            spec.stdout_path.write_text(text)
        code = int(cause.split(":")[1]) if cause.startswith("exit:") else (0 if cause == "ok" else None)
        return RunOutcome(cause=cause, exit_code=code, wall_s=time.monotonic() - started,
                          peak_memory_gb=extra.get("memory_gb"))

    def reap(self, handle: dict[str, Any]) -> bool:
        self.reaped.append(handle)
        return False

    def reattach(
        self, handle: dict[str, Any], spec: RunSpec, on_started: OnStarted | None = None,
    ) -> RunOutcome | None:
        return None

    def reap_orphans(self) -> int:
        return 0

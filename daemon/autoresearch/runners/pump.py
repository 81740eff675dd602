"""The log pump: a run's output copied into its capped log on a thread, until the deadline.

Every runner uses it: Docker feeds it the attach stream, the process runner a pipe read with
``pipe_chunks``. ``close`` shuts the gate at the deadline (or when the run is over): nothing read
after it reaches the log, so a straggler printing a metric after the deadline is never counted, and
a pipe held open by an escaped process cannot keep the daemon waiting.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import structlog

from autoresearch.runners.base import CappedLog

log = structlog.get_logger("autoresearch.runners")


class Sink(Protocol):
    def write(self, chunk: bytes) -> None: ...


class UntilDeadline:
    """A sink that takes only what arrives before ``deadline`` (monotonic): the copy of a run's stdout the
    metric is read from, so a line printed after the deadline never counts."""

    def __init__(self, sink: Sink, deadline: float) -> None:
        self._sink, self._deadline = sink, deadline

    def write(self, chunk: bytes) -> None:
        if time.monotonic() < self._deadline:
            self._sink.write(chunk)


class StdoutTee:
    """The sink for a run's stdout pipe: the log, and the stdout copy up to the deadline."""

    def __init__(self, log: Sink, copy: Sink, deadline: float) -> None:
        self._log, self._copy = log, UntilDeadline(copy, deadline)

    def write(self, chunk: bytes) -> None:
        self._log.write(chunk)
        self._copy.write(chunk)


def demux_chunks(frames: Iterable[tuple[bytes | None, bytes | None]], stdout: Sink) -> Iterator[bytes]:
    """Chunks for the log from a demultiplexed stream of (stdout, stderr) frames (Docker's attach with
    ``demux=True``); stdout's parts also go to ``stdout``."""
    for out, err in frames:
        if out:
            stdout.write(out)
            yield out
        if err:
            yield err


class LogPump:
    """Copies chunks into the capped run log on a thread; after the cap they are drained and dropped,
    so the writer never blocks on a full pipe. ``on_end`` is called when the stream ends."""

    def __init__(
        self,
        chunks: Iterable[bytes],
        sink: CappedLog | Sink,
        on_end: Callable[[], None] = lambda: None,
        gate: threading.Event | None = None,
    ) -> None:
        self.error: str | None = None
        self._chunks = chunks
        self._sink = sink
        self._on_end = on_end
        self._gate = gate or threading.Event()
        """Set by ``close``; give the same event to ``pipe_chunks`` so its reader stops there too."""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="log-pump", daemon=True)

    def start(self) -> LogPump:
        self._thread.start()
        return self

    def close(self) -> None:
        """From now on nothing reaches the log (the deadline passed, or the run is over)."""
        with self._lock:
            self._gate.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                with self._lock:  # a chunk is written whole before close() returns, or not at all
                    if self._gate.is_set():
                        break
                    self._sink.write(chunk)
        except Exception as exc:  # the stream breaks when the engine dies; the caller classifies that
            self.error = f"{type(exc).__name__}: {exc}"
            log.debug("runner.log_stream_error", error=self.error)
        finally:
            self._on_end()


def pipe_chunks(fd: int, stop: threading.Event, poll_s: float = 0.1) -> Iterator[bytes]:
    """Chunks read from a pipe until EOF or until ``stop`` is set (even while writers hold it open)."""
    with contextlib.suppress(OSError):
        while not stop.is_set():
            ready, _, _ = select.select([fd], [], [], poll_s)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return
            yield chunk

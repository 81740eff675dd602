"""Waiting for a container on the daemon's own clock, and stopping it when it must end.

The SDK's ``wait(timeout=)`` is only an HTTP timeout, so the budget is enforced here: a short tick
that watches the cancel flag, the deadline and the disk the run writes, and inspects the container.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from autoresearch.runners.base import RunSpec
    from autoresearch.runners.docker_files import RunFiles

log = structlog.get_logger("autoresearch.runners.docker")

TICK_S = 0.1
INSPECT_EVERY_S = 0.5  # while the output stream is open; every tick once it has closed
CAP_EVERY_S = 1.0


@dataclass
class Ending:
    cause: str
    exit_code: int | None
    wall_s: float
    kill_latency_s: float | None = None
    detail: str = ""


def wait_for_end(
    *,
    container: Any,
    output_closed: threading.Event,
    spec: RunSpec,
    files: RunFiles,
    started: float,
    write_cap: int,
    stop_timeout_s: float,
    engine_errors: tuple[type[BaseException], ...],
) -> Ending:
    """Block until the container exits or is stopped; never raises for engine errors (cause docker)."""
    api = container.client.api
    deadline = started + spec.deadline_s
    next_inspect = next_cap = started
    closed_seen = False
    try:
        while True:
            (spec.cancel if output_closed.is_set() else output_closed).wait(TICK_S)
            spec.heartbeat()
            now = time.monotonic()
            why = _reason_to_stop(spec, now, deadline)
            if why is None and now >= next_cap:
                next_cap = now + CAP_EVERY_S
                if files.written_bytes() > write_cap:
                    why = ("violation", f"wrote more than the write cap ({write_cap} bytes) to the target/output")
            if why is not None:
                return _stop(container, why, spec, started, stop_timeout_s, engine_errors)
            closed = output_closed.is_set()
            if now >= next_inspect or (closed and not closed_seen):  # output closed: most likely it exited
                closed_seen = closed
                state = api.inspect_container(container.id)["State"]
                if not state["Running"]:
                    return _exited(state, time.monotonic() - started)
                next_inspect = now + (TICK_S if closed else INSPECT_EVERY_S)
    except engine_errors as exc:
        log.warning("docker.engine_lost", n=spec.n, error=str(exc))
        return Ending("docker", None, time.monotonic() - started, detail=f"Docker engine error during the run: {exc}")


def _reason_to_stop(spec: RunSpec, now: float, deadline: float) -> tuple[str, str] | None:
    if spec.cancel.is_set():
        return ("interrupted", "stopped: the daemon was asked to shut down")
    if now >= deadline:
        return ("timeout", f"killed at budget + grace ({spec.budget:g} s + {spec.grace:g} s)")
    return None


def _stop(
    container: Any,
    why: tuple[str, str],
    spec: RunSpec,
    started: float,
    stop_timeout_s: float,
    engine_errors: tuple[type[BaseException], ...],
) -> Ending:
    """SIGTERM, then SIGKILL after ``stop_timeout_s``; the latency is how long until it was gone."""
    t0 = time.monotonic()
    try:
        container.stop(timeout=max(0, math.ceil(stop_timeout_s)))
    except engine_errors:
        # stop can fail on a hung container; kill is the last word (its failure is an engine error)
        container.kill()
    latency = time.monotonic() - t0
    state: dict[str, Any] = {}
    with contextlib.suppress(*engine_errors):
        state = container.client.api.inspect_container(container.id)["State"]
    cause, detail = why
    log.info("docker.stopped", n=spec.n, why=cause, kill_latency_s=round(latency, 3))
    return Ending(
        cause=cause,
        exit_code=state.get("ExitCode"),
        wall_s=time.monotonic() - started,
        kill_latency_s=latency,
        detail=f"{detail}; gone {latency:.2f} s after the stop signal",
    )


def _exited(state: dict[str, Any], wall_s: float) -> Ending:
    code = int(state.get("ExitCode", -1))
    if state.get("OOMKilled"):
        return Ending("oom", code, wall_s, detail="out of memory: killed at the container's memory limit")
    if code == 0:
        return Ending("ok", 0, wall_s)
    return Ending(f"exit:{code}", code, wall_s, detail=state.get("Error") or "")

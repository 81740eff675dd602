"""Cancelling an agent's work when the daemon stops.

An HTTP request blocked on a server that does not answer cannot be interrupted from another thread
(closing its socket does not wake a blocked ``recv``), and the SDK's own timeout is ten minutes, while
systemd kills the daemon 30 s after SIGTERM. So a blocking call runs in a helper thread and the caller
waits for it *or* the stop event: on stop the caller raises ``AgentCancelled`` at once and the helper,
a daemon thread, ends with the process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from autoresearch.errors import AgentCancelled

T = TypeVar("T")

POLL_S = 0.1
"""How often a waiting caller looks at the stop event."""


def check(stop: threading.Event | None) -> None:
    """Raise ``AgentCancelled`` when the daemon is stopping."""
    if stop is not None and stop.is_set():
        raise AgentCancelled("the daemon is stopping: the agent's conversation was cancelled")


def call(fn: Callable[[], T], stop: threading.Event | None, what: str) -> T:
    """``fn()``'s result or exception, or ``AgentCancelled`` as soon as ``stop`` is set."""
    check(stop)
    if stop is None:
        return fn()
    done = threading.Event()
    box: dict[str, T] = {}
    failed: list[BaseException] = []

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            failed.append(exc)
        finally:
            done.set()

    threading.Thread(target=work, name=what, daemon=True).start()
    while not done.wait(POLL_S):
        check(stop)
    if failed:
        raise failed[0]
    return box["value"]


def sleeper(stop: threading.Event | None, sleep: Callable[[float], None] | None) -> Callable[[float], None]:
    """A retry pause that ends with ``AgentCancelled`` when the daemon stops during it (``sleep``: a test's
    own clock, looked at the stop event after it)."""

    def pause(seconds: float) -> None:
        if sleep is not None:
            sleep(seconds)
        elif stop is None:
            time.sleep(seconds)
        else:
            stop.wait(seconds)
        check(stop)

    return pause

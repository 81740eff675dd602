"""The one retry policy factory. Every retried call in autoresearch goes through ``retrying``:
exponential backoff with jitter, an explicit list of errors that abort at once, and an optional
server-given wait (``retry-after``) that overrides the backoff."""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)
from tenacity.stop import stop_base

log = structlog.get_logger("autoresearch.retry")


def backoff_s(failures: int, *, initial_s: float = 1.0, max_s: float = 600.0) -> float:
    """The pause after ``failures`` failures in a row of something the loop repeats (not a retried call,
    e.g. a proposal): doubling from ``initial_s``, capped at ``max_s``."""
    return min(initial_s * 2.0 ** max(failures - 1, 0), max_s)


def retrying(
    *,
    retry_on: tuple[type[BaseException], ...],
    abort_on: tuple[type[BaseException], ...] = (),
    attempts: int | None = 6,
    max_delay_s: float | None = None,
    initial_s: float = 1.0,
    max_wait_s: float = 60.0,
    server_wait: Callable[[BaseException], float | None] | None = None,
    what: str = "call",
    sleep: Callable[[float], None] | None = None,
) -> Retrying:
    """A tenacity ``Retrying`` for ``retry_on`` errors that never retries ``abort_on`` ones.

    ``server_wait`` extracts a wait the server asked for (e.g. retry-after) from an error.
    ``attempts=None`` with ``max_delay_s=None`` retries forever (used to wait out a Docker restart).
    """
    backoff = wait_random_exponential(multiplier=initial_s, max=max_wait_s)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and server_wait is not None:
            asked = server_wait(exc)
            if asked is not None:
                return min(max(asked, 0.0), max_wait_s)
        return float(backoff(state))

    def should_retry(exc: BaseException) -> bool:
        return isinstance(exc, retry_on) and not isinstance(exc, abort_on)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("retry.wait", what=what, attempt=state.attempt_number, wait_s=round(delay, 2), error=str(exc))

    stop: stop_base = stop_never
    if attempts is not None:
        stop = stop_after_attempt(attempts)
    if max_delay_s is not None:
        stop = stop_after_delay(max_delay_s) if attempts is None else stop | stop_after_delay(max_delay_s)
    return Retrying(
        retry=retry_if_exception(should_retry),
        wait=wait,
        stop=stop,
        reraise=True,
        before_sleep=before_sleep,
        sleep=sleep or time.sleep,
    )

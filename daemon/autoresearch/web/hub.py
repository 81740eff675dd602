"""One watcher for all clients: it polls the journal's size and the in-flight runs' logs, rebuilds the
page's JSON once per change (in a worker thread) and wakes every event stream. Clients only read
what it built, so N watchers cost one journal read."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from autoresearch.errors import AutoresearchError
from autoresearch.journal.status import lane_of
from autoresearch.journal.store import JournalState
from autoresearch.runners.lanes import Lane
from autoresearch.web.chart import render_svg
from autoresearch.web.source import SessionSource
from autoresearch.web.view import snapshot

log = structlog.get_logger("autoresearch.web")

POLL_S = 0.25
"""How often the journal's size and the running logs are checked (a stat each: cheap)."""
LOG_BYTES = 6000


@dataclass
class Hub:
    source: SessionSource
    lanes: list[Lane]
    poll_s: float = POLL_S
    version: int = 0
    state_json: str = "{}"
    rows_json: list[str] = field(default_factory=list)
    boot: str = field(default_factory=lambda: secrets.token_hex(4))
    """Tells this server's state ids from an earlier one's (a client that reconnects after a restart)."""
    logs_version: int = 0
    logs_json: str = "{}"
    error: str | None = None
    _state: JournalState | None = None
    _signature: Any = None
    _log_signature: Any = None
    chart_version: int = 0
    _chart: bytes | None = None
    _chart_key: Any = None
    _chart_task: asyncio.Task[None] | None = None
    _chart_ready: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Poll until cancelled (the server's lifespan)."""
        while True:
            try:
                await self.refresh()
            except AutoresearchError as exc:  # a torn or invalid journal: show it, keep watching
                if self.error != str(exc):
                    log.warning("web.read_failed", error=str(exc))
                    self.error = str(exc)
                    self._wake()
            await asyncio.sleep(self.poll_s)

    async def refresh(self) -> None:
        signature = self.source.signature()
        if signature != self._signature or self._state is None:
            state, text, rows = await anyio.to_thread.run_sync(self._build)
            self._state, self.state_json, self.rows_json, self._signature = state, text, rows, signature
            self.version += 1
            self.error = None
            self._wake()
            if self._chart_task is None or self._chart_task.done():
                self._chart_task = asyncio.create_task(self._draw())
        logs = self._log_files(self._state)
        log_signature = [(n, self._size(n)) for n in logs]
        if log_signature != self._log_signature:
            tails = await anyio.to_thread.run_sync(self._tails, logs)
            self.logs_json = json.dumps(tails)
            self._log_signature = log_signature
            self.logs_version += 1
            self._wake()

    def _build(self) -> tuple[JournalState, str, list[str]]:
        """The state without its rows, and each row as its own JSON (streams send only changed rows)."""
        state = self.source.load()
        view = snapshot(state, self.source.settings, self.lanes, dt.datetime.now(dt.UTC))
        view["archived"] = self.source.archived
        view["version"] = self.version + 1
        view["id"] = self.state_id(self.version + 1)
        rows = [json.dumps(row) for row in view.pop("rows")]
        return state, json.dumps(view), rows

    def full_json(self) -> str:
        """The state with every row (the page's first fetch)."""
        return self.state_json[:-1] + ', "rows": [' + ",".join(self.rows_json) + "]}"

    def state_id(self, version: int | None = None) -> str:
        return f"{self.boot}-{self.version if version is None else version}"

    def _log_files(self, state: JournalState | None) -> dict[int, int]:
        """Lane → the experiment training in it now (its log grows while it runs)."""
        if state is None:
            return {}
        return {lane_of(e): e.n for e in state.open() if e.running is not None and e.finished is None}

    def _tails(self, logs: dict[int, int]) -> dict[str, dict[str, Any]]:
        return {str(lane): {"n": n, "tail": self.source.log_tail(n, LOG_BYTES)} for lane, n in logs.items()}

    def _size(self, n: int) -> int:
        try:
            return self.source.log_path(n).stat().st_size
        except OSError:
            return -1

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self) -> None:
        """Until the next change (state, logs or an error)."""
        await self._changed.wait()

    @property
    def state(self) -> JournalState | None:
        return self._state

    async def _draw(self) -> None:
        """Redraw the chart until it shows the latest recorded experiment: once per recorded row (the
        chart shows nothing else), in a worker thread, never while a client waits for it."""
        settings = self.source.settings
        while (state := self._state) is not None and _chart_key(state) != self._chart_key:
            key = _chart_key(state)
            try:
                self._chart = await anyio.to_thread.run_sync(
                    lambda: render_svg(self.source.journal_path, settings.metric, settings.direction))
            except Exception:  # a drawing bug must not stop the live page: the table and lanes go on
                log.exception("web.chart_failed")
                self._chart_ready.set()
                return
            self._chart_key = key
            self.chart_version += 1
            self._chart_ready.set()
            self._wake()

    async def close(self) -> None:
        """Let a drawing in progress finish: its worker thread must not outlive the server (a thread
        still in matplotlib while the interpreter exits aborts it)."""
        if self._chart_task is not None:
            with contextlib.suppress(Exception):
                await self._chart_task

    async def chart(self) -> bytes | None:
        """The newest drawing (the first one is waited for); None when it could not be drawn."""
        if self._chart is None:
            if self._state is None:
                await self.refresh()
            await self._chart_ready.wait()
        return self._chart


def _chart_key(state: JournalState) -> tuple[int, int | None]:
    """What the chart depends on changes only when a row is recorded."""
    return len(state.completion), state.completion[-1] if state.completion else None

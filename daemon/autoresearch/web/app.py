"""The dashboard's routes: the page and its static assets, the JSON state, a diff and a log per
experiment, the chart, the event stream (server-sent events, sse-starlette) and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from autoresearch.errors import AutoresearchError
from autoresearch.runners.lanes import Lane
from autoresearch.web.gate import LOOPBACK_NAMES, Gate
from autoresearch.web.hub import Hub
from autoresearch.web.metrics import SessionCollector
from autoresearch.web.source import SessionSource

STATIC = Path(__file__).parent / "static"
PING_S = 15
NO_STORE = {"cache-control": "no-store"}


@dataclass
class Dashboard:
    """What the routes share: the session and the one watcher."""

    source: SessionSource
    hub: Hub
    registry: CollectorRegistry

    async def metrics(self, _request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def page(self, _request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=NO_STORE)

    async def state(self, _request: Request) -> Response:
        if self.hub.state is None:
            await self.hub.refresh()
        return Response(self.hub.full_json(), media_type="application/json", headers=NO_STORE)

    async def chart(self, _request: Request) -> Response:
        svg = await self.hub.chart()
        if svg is None:
            return PlainTextResponse("the chart could not be drawn (see the server's log)\n", status_code=503)
        return Response(svg, media_type="image/svg+xml", headers=NO_STORE)

    async def diff(self, request: Request) -> Response:
        exp = self._experiment(request)
        if exp is None:
            return PlainTextResponse("no such experiment\n", status_code=404)
        if exp.committed is None:
            return PlainTextResponse("(not committed yet)\n", headers=NO_STORE)
        parent, commit = exp.parent, exp.commit
        try:
            text = await asyncio.to_thread(self.source.diff, parent, commit)
        except AutoresearchError as exc:  # e.g. a commit gc'd away after its ref was deleted by hand
            return PlainTextResponse(f"no diff: {exc}\n", status_code=410)
        return PlainTextResponse(text or "(no change: the same files as its parent)\n")

    async def log(self, request: Request) -> Response:
        exp = self._experiment(request)
        if exp is None:
            return PlainTextResponse("no such experiment\n", status_code=404)
        text = await asyncio.to_thread(self.source.log_tail, exp.n, 200_000)
        return PlainTextResponse(text, headers=NO_STORE)

    def _experiment(self, request: Request) -> Any:
        state = self.hub.state
        n = request.path_params["n"]
        return None if state is None else state.experiments.get(n)

    async def events(self, request: Request) -> Response:
        return EventSourceResponse(self._stream(request), ping=PING_S, headers=NO_STORE)

    async def _stream(self, request: Request) -> AsyncIterator[dict[str, str]]:
        """The full state on connect and after every journal change; the running logs' tails as they grow."""
        hub = self.hub
        state_seen = logs_seen = chart_seen = -1
        error_seen: str | None = None
        # The state the client has (the page fetched it gzipped; EventSource resends its last id on a
        # reconnect) is not sent again.
        have = request.query_params.get("since") or request.headers.get("last-event-id")
        rows_sent: list[str] = []
        if have is not None and have == hub.state_id():
            state_seen, rows_sent = hub.version, hub.rows_json
        while not await request.is_disconnected():
            if hub.version != state_seen:
                state_seen = hub.version
                rows = _rows_delta(rows_sent, hub.rows_json)
                rows_sent = hub.rows_json
                if rows is not None:
                    yield {"event": "rows", "data": rows}
                yield {"event": "state", "id": hub.state_id(state_seen), "data": hub.state_json}
            if hub.chart_version != chart_seen:
                chart_seen = hub.chart_version
                yield {"event": "chart", "data": str(chart_seen)}
            if hub.logs_version != logs_seen:
                logs_seen = hub.logs_version
                yield {"event": "logs", "data": hub.logs_json}
            if hub.error != error_seen:
                error_seen = hub.error
                yield {"event": "problem", "data": error_seen or ""}
            if (hub.version, hub.logs_version, hub.chart_version, hub.error) == (
                    state_seen, logs_seen, chart_seen, error_seen):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hub.wait(), timeout=PING_S)


def _rows_delta(sent: list[str], now: list[str]) -> str | None:
    """The rows a client lacks: from the first that differs from what it was sent (rows are appended as
    experiments are recorded; an older row changes only when its commit is measured again)."""
    start = next((i for i, (a, b) in enumerate(zip(sent, now, strict=False)) if a != b), min(len(sent), len(now)))
    if start == len(sent) == len(now):
        return None
    return f'{{"from": {start}, "rows": [{",".join(now[start:])}]}}'


def build_app(source: SessionSource, token: str | None, lanes: list[Lane], hosts: frozenset[str] = LOOPBACK_NAMES,
              poll_s: float | None = None) -> Gate:
    hub = Hub(source, lanes) if poll_s is None else Hub(source, lanes, poll_s=poll_s)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SessionCollector(source))
    dash = Dashboard(source, hub, registry)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        watcher = asyncio.create_task(hub.run())
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await hub.close()

    app = Starlette(
        routes=[
            Route("/", dash.page),
            Route("/api/state", dash.state),
            Route("/api/diff/{n:int}", dash.diff),
            Route("/api/log/{n:int}", dash.log),
            Route("/chart.svg", dash.chart),
            Route("/events", dash.events),
            Route("/metrics", dash.metrics),
            Mount("/static", StaticFiles(directory=STATIC)),
        ],
        middleware=[Middleware(GZipMiddleware, minimum_size=1024)],
        lifespan=lifespan,
    )
    return Gate(app, token, hosts)


"""Binding and running the dashboard: ``autoresearch serve`` in the foreground, or beside the loop in
a thread when ``[http] listen`` is set. The socket is bound here, before uvicorn starts, so a busy
port or a refused address is a clear error (exit 2), and port 0 reports the port it got."""

from __future__ import annotations

import atexit
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn

from autoresearch.errors import ConfigError
from autoresearch.ops.config import Settings
from autoresearch.runners.lanes import status_lanes
from autoresearch.web.access import Listen, redact_logs, required_token
from autoresearch.web.app import build_app
from autoresearch.web.gate import LOOPBACK_NAMES
from autoresearch.web.source import SessionSource

log = structlog.get_logger("autoresearch.web")

DEFAULT_LISTEN = "127.0.0.1:8765"
SHUTDOWN_GRACE_S = 2
STOP_WAIT_S = 20.0
"""The daemon's exit waits this long for its dashboard (inside systemd's TimeoutStopSec=30s)."""


@dataclass
class Prepared:
    server: uvicorn.Server
    sock: socket.socket
    url: str


def prepare(repo: Path, listen_text: str | None, archive: str | None = None,
            settings: Settings | None = None) -> Prepared:
    """Check everything (session, address, token), then bind: nothing listens if anything is wrong."""
    source = SessionSource.from_repo(repo, archive, settings)
    http = source.settings.http
    listen = Listen.parse(listen_text or http.listen or DEFAULT_LISTEN)
    token = required_token(listen, http)
    redact_logs(token)
    sock = _bind(listen)
    app = build_app(source, token, status_lanes(source.settings), LOOPBACK_NAMES | {listen.host.lower()})
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=SHUTDOWN_GRACE_S, server_header=False)
    host, port = sock.getsockname()[:2]
    url = f"http://{Listen(str(host), int(port))}/"
    log.info("http.listening", url=url, login=token is not None, session=archive or "current")
    return Prepared(server=uvicorn.Server(config), sock=sock, url=url)


def _bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    try:
        return socket.create_server((listen.host, listen.port), family=family)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}") from exc


def serve_forever(repo: Path, listen: str | None, archive: str | None, say: Callable[[str], None]) -> None:
    """``autoresearch serve``: until SIGINT/SIGTERM (uvicorn's own handlers)."""
    prepared = prepare(repo, listen, archive)
    say(f"dashboard: {prepared.url}  metrics: {prepared.url}metrics  (Ctrl-C stops)")
    with prepared.sock:
        prepared.server.run(sockets=[prepared.sock])


@dataclass
class Background:
    """The dashboard in a thread of the daemon (uvicorn installs no signal handlers off the main thread)."""

    prepared: Prepared
    thread: threading.Thread

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Close the connections and wait for the server's thread (a chart being drawn finishes first)."""
        self.prepared.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("http.stop_timeout", waited_s=timeout)
        self.prepared.sock.close()


def serve_beside(repo: Path, settings: Settings, say: Callable[[str], None] | None = None) -> Background | None:
    """The daemon's ``[http] listen``: the dashboard in a thread of this process, stopped when it exits
    (atexit: after the loop, whichever way it ended). None when it is not set."""
    if not settings.http.listen:
        return None
    prepared = prepare(repo, None, None, settings)
    thread = threading.Thread(target=prepared.server.run, kwargs={"sockets": [prepared.sock]},
                              name="http", daemon=True)
    thread.start()
    background = Background(prepared, thread)
    atexit.register(background.stop)
    if say is not None:
        say(f"dashboard: {prepared.url}")
    return background

"""The daemon started while the Docker engine is down waits (saying why in status and in systemd's
STATUS line), then runs experiments once the engine comes up. The shared engine is never stopped: the
daemon talks to it through a socket path that only exists once a relay listens there."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch.cli.commands import repo_id
from autoresearch.journal.ledger import parse_results
from tests.conftest import GIT_ENV, cli, make_repo
from tests.runners.conftest import SocketProxy

pytestmark = pytest.mark.docker


@contextlib.contextmanager
def notify_socket(path: Path) -> Iterator[list[str]]:
    """A stand-in for systemd's NOTIFY_SOCKET: collects what the daemon sends."""
    received: list[str] = []
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    done = threading.Event()

    def collect() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                received.append(sock.recv(65536).decode())

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        done.set()
        thread.join()
        sock.close()
        path.unlink(missing_ok=True)


def _status(repo: Path) -> dict[str, Any]:
    result = cli("status", str(repo), "--json")
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def test_daemon_started_with_the_engine_down_waits_then_runs(docker_client: Any, tmp_path: Path) -> None:
    upstream = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not upstream.startswith("unix://"):
        pytest.skip("the engine relay needs a UNIX-socket engine")
    short = f"/tmp/ar-{uuid.uuid4().hex[:8]}"  # sun_path is 108 bytes
    relay = SocketProxy(upstream.removeprefix("unix://"), Path(f"{short}.sock"))  # not listening yet
    repo = make_repo(tmp_path / "research")
    init = cli("init", str(repo), "--tag", "w", "--runner", "docker", "--budget", "5")
    assert init.returncode == 0, init.stderr
    env = {**os.environ, **GIT_ENV, "AUTORESEARCH_DOCKER__HOST": f"unix://{relay.path}",
           "AUTORESEARCH_GRACE": "60", "NOTIFY_SOCKET": f"{short}.notify"}
    with notify_socket(Path(f"{short}.notify")) as sent:
        daemon = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo), "--max-experiments", "2"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            deadline = time.monotonic() + 120
            while (waiting := _status(repo)["waiting"]) is None:
                assert daemon.poll() is None, daemon.communicate()[1].decode()[-3000:]
                assert time.monotonic() < deadline, "the daemon never said it waits"
                time.sleep(0.5)
            assert waiting["what"] == "engine" and f"unreachable at unix://{relay.path}" in waiting["reason"]
            assert _status(repo)["experiments"] == 0 and daemon.poll() is None
            relay.start()  # the engine comes up
            _, err = daemon.communicate(timeout=600)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            relay.stop()
            for c in docker_client.containers.list(all=True, filters={"label": f"autoresearch.repo={repo_id(repo)}"}):
                c.remove(force=True)
    assert daemon.returncode == 0, err.decode()[-3000:]
    rows = parse_results((repo / "results.tsv").read_text())
    assert len(rows) == 2 and rows[0]["status"] == "keep" and rows[1]["status"] in ("keep", "discard")
    final = _status(repo)
    assert final["waiting"] is None and final["experiments"] == 2
    assert sent[0].startswith("READY=1")
    assert any(m.startswith("STATUS=waiting for the Docker engine: Docker engine unreachable") for m in sent)

"""Fixtures for the runner tests against a real Docker engine.

Tests marked ``docker`` skip when no engine (or no runner image) is reachable, unless
AUTORESEARCH_REQUIRE_DOCKER=1 (CI), where they fail instead. Every docker test is checked for
leftovers: no container or volume labelled with the session's repo id may survive it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

IMAGE = os.environ.get("AUTORESEARCH_TEST_IMAGE", "autoresearch-runner:local")
REQUIRE = os.environ.get("AUTORESEARCH_REQUIRE_DOCKER") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (AUTORESEARCH_REQUIRE_DOCKER=1, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A client of the engine the tests use; skip or fail if there is none, or no runner image."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        _unavailable(f"no Docker engine reachable: {exc}")
    try:
        client.images.get(IMAGE)
    except Exception as exc:
        _unavailable(f"runner image {IMAGE} missing ({exc}): run runner-image/build-local.sh")
    yield client
    client.close()


@pytest.fixture(scope="session")
def image() -> str:
    return IMAGE


@pytest.fixture(scope="session")
def repo_id() -> str:
    return f"pytest-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(autouse=True)
def _no_leftover_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("docker") is None:
        yield
        return
    client = request.getfixturevalue("docker_client")
    label = f"autoresearch.repo={request.getfixturevalue('repo_id')}"
    yield
    left = client.containers.list(all=True, filters={"label": label})
    for c in left:
        with contextlib.suppress(Exception):
            c.remove(force=True)
    volumes = client.volumes.list(filters={"label": label})
    for v in volumes:
        with contextlib.suppress(Exception):
            v.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"
    assert not volumes, f"volumes left behind: {[v.name for v in volumes]}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A research tree: train.py (the target), prepare.py (read-only) and a .git that must stay hidden."""
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config").write_text("[secret]\n")
    (repo / "train.py").write_text("print('train')\n")
    (repo / "prepare.py").write_text("print('prepare')\n")
    return repo


@pytest.fixture
def make_runner(repo_id: str) -> Callable[..., Any]:
    from autoresearch.ops.config import DockerSettings
    from autoresearch.runners.docker import DockerRunner

    def make(**overrides: Any) -> DockerRunner:
        base: dict[str, Any] = {"image": IMAGE, "stop_timeout_s": 1, "memory": "512m", "tmpfs_size": "64m"}
        settings = DockerSettings(**{**base, **overrides})
        return DockerRunner(settings, repo_id=repo_id, instance="pytest", host_env={"PYTHONHASHSEED": "0"})

    return make


def snapshot_of(tree: Path, dest: Path) -> Path:
    """What ``Workspace.export`` makes for a run: the tree's files without .git (here: a plain copy)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(tree, dest, ignore=shutil.ignore_patterns(".git"), symlinks=True)
    return dest


@pytest.fixture
def make_spec(tmp_path: Path, workdir: Path) -> Callable[..., Any]:
    """A RunSpec whose snapshot is the tree as it is now (tests write their scripts in first)."""
    from autoresearch.runners.base import RunSpec

    counter = iter(range(1, 1000))

    def make(command: str, budget: float = 5.0, grace: float = 1.0, **kw: Any) -> RunSpec:
        n = kw.pop("n", next(counter))
        env = {"AUTORESEARCH_TIME_BUDGET": str(budget), "ANTHROPIC_API_KEY": "sk-ant-secret", **kw.pop("env", {})}
        defaults: dict[str, Any] = {
            "kind": "train",
            "workdir": workdir,
            "log_path": tmp_path / "runs" / str(n) / "run.log",
            "log_cap_bytes": 1 << 20,
            "target": "train.py",
            "readonly": ("prepare.py",),
            "cache_dir": tmp_path / "cache",
        }
        if "snapshot" not in kw:
            kw["snapshot"] = snapshot_of(kw.get("workdir", workdir), tmp_path / "snapshots" / str(n))
        return RunSpec(n=n, command=command, budget=budget, grace=grace, env=env, **{**defaults, **kw})

    return make


class SocketProxy:
    """A UNIX-socket relay in front of the engine: stopping it looks like the engine going away."""

    def __init__(self, upstream: str, path: Path) -> None:
        self.upstream = upstream
        self.path = path
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> SocketProxy:
        self.path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        # Unlink first: a client woken by the closes below must not reconnect through the old path.
        self.path.unlink(missing_ok=True)
        with self._lock:
            if self._listener is not None:
                with contextlib.suppress(OSError):
                    self._listener.shutdown(socket.SHUT_RDWR)
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    return
                server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                server.connect(self.upstream)
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def engine_proxy(docker_client: Any) -> Iterator[SocketProxy]:
    upstream = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not upstream.startswith("unix://"):
        pytest.skip("the engine proxy needs a UNIX-socket engine")
    path = Path(f"/tmp/ar-proxy-{uuid.uuid4().hex[:8]}.sock")  # short: sun_path is 108 bytes
    proxy = SocketProxy(upstream.removeprefix("unix://"), path).start()
    yield proxy
    proxy.stop()

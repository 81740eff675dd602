"""SIGTERM cancels agent conversations (issue 17, finding 6): a request to an API that never answers, or a
command agent that works on, ends at once when the daemon stops, and the daemon stops within systemd's
``TimeoutStopSec`` (30 s) with a ``stop`` record.

The real Anthropic SDK talks to a local server that accepts connections and never answers."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autoresearch.agents.anthropic import AnthropicAgent
from autoresearch.agents.base import Agent, ProposalContext
from autoresearch.errors import AgentCancelled, AgentError
from autoresearch.ops.config import Settings
from autoresearch.runners import procs
from tests.agents.conftest import KEY, make_ctx
from tests.agents.test_anthropic_cli import autoresearch, init
from tests.agents.test_command_agent import cli_script, make, probe  # noqa: F401 (fixtures)
from tests.runners.process_helpers import marked_pids, token
from tests.subprocs import reaped, terminated

STOP_TIMEOUT_S = 30.0
"""The unit's TimeoutStopSec: systemd SIGKILLs a daemon that takes longer."""


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """An HTTP endpoint that takes every connection and its request, and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", held
    finally:
        listener.close()
        for conn in held:
            conn.close()


def propose_in_thread(agent: Agent, ctx: ProposalContext) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def work() -> None:
        try:
            agent.propose(ctx)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, raised


def test_stop_cancels_a_request_the_api_never_answers(research: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()
    with silent_server() as (url, held):
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        settings = Settings(agent="anthropic", anthropic={"base_url": url, "model": "claude-haiku-4-5"})
        agent = AnthropicAgent.from_config(settings, research, stop=stop)
        thread, raised = propose_in_thread(agent, make_ctx(research))
        deadline = time.monotonic() + 10
        while not held and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held, "the SDK never connected"
        time.sleep(1.0)
        assert thread.is_alive() and not raised  # the SDK waits (its timeout is 600 s)
        t0 = time.monotonic()
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive() and time.monotonic() - t0 < 2
        agent.close()
    assert len(raised) == 1 and isinstance(raised[0], AgentCancelled), raised
    assert raised[0].usage is not None  # what was spent so far still reaches the ledger


def test_stop_during_a_retry_pause_cancels(research: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 529 asked for a long retry-after: the pause ends with the stop, not after it."""
    from autoresearch.agents.fake_messages import Fail, FakeMessagesAPI

    stop = threading.Event()
    with FakeMessagesAPI([Fail(529, "overloaded", {"retry-after": "60"})]) as fake:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        settings = Settings(agent="anthropic", anthropic={"base_url": fake.url, "model": "claude-haiku-4-5",
                                                          "retry_max_wait_s": 120})
        agent = AnthropicAgent.from_config(settings, research, stop=stop)
        thread, raised = propose_in_thread(agent, make_ctx(research))
        deadline = time.monotonic() + 10
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        thread.join(timeout=5)
        agent.close()
    assert not thread.is_alive() and isinstance(raised[0], AgentCancelled)
    assert len(fake.requests) == 1


def test_stop_ends_a_command_agent_and_all_it_started(
    research: Path, cli_script: Path, probe: Path,  # noqa: F811 (the imported fixtures)
) -> None:
    mark = token()
    (probe / "mark.txt").write_text(mark)
    agent = make(research, cli_script, "hang", timeout_s=600.0, kill_grace_s=30.0)
    stop = threading.Event()
    agent.stop = stop
    thread, raised = propose_in_thread(agent, make_ctx(research))
    deadline = time.monotonic() + 20
    while not marked_pids(mark) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked_pids(mark), "the command never started"
    t0 = time.monotonic()
    stop.set()
    thread.join(timeout=15)
    assert not thread.is_alive() and time.monotonic() - t0 < 5  # not the 30 s grace: the stop has 30 s in all
    assert isinstance(raised[0], AgentCancelled) and isinstance(raised[0], AgentError)
    assert procs.wait_gone(lambda: marked_pids(mark), 10.0)


def test_sigterm_stops_the_daemon_in_time_with_a_stop_record(research: Path) -> None:
    """The CLI process, a real SIGTERM while the drafter waits on an API that never answers."""
    init(research)
    journal = research / ".git" / "autoresearch" / "journal.jsonl"
    with silent_server() as (url, held):
        env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": url, "AUTORESEARCH_ANTHROPIC__MODEL": "claude-haiku-4-5"}
        clean = autoresearch("--version", env=env)  # the same environment the helper builds, checked once
        assert clean.returncode == 0
        daemon = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(research), "--agent", "anthropic"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(env))
        with reaped(daemon):
            deadline = time.monotonic() + 90
            while not (held and _rows(research) >= 1) and time.monotonic() < deadline and daemon.poll() is None:
                time.sleep(0.1)
            assert held and _rows(research) >= 1, daemon.stderr.read() if daemon.poll() is not None else "no request"
            time.sleep(0.5)
            t0 = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            _out, err = terminated(daemon, timeout=STOP_TIMEOUT_S)
            took = time.monotonic() - t0
    assert daemon.returncode == 0, err
    assert took < STOP_TIMEOUT_S / 2, took
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert records[-1]["type"] == "stop" and records[-1]["reason"] == "signal", records[-1]
    cancelled = [r for r in records if r["type"] == "usage" and "cancelled" in r.get("error", "")]
    assert len(cancelled) == 1  # the abandoned conversation is journaled (its cost counts), before the stop


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    from tests.conftest import GIT_ENV, NO_CGROUPS, NO_REPEATS

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AUTORESEARCH_"))}
    clean.pop("CREDENTIALS_DIRECTORY", None)
    return {**clean, **GIT_ENV, **NO_REPEATS, **NO_CGROUPS, **extra}


def _rows(repo: Path) -> int:
    path = repo / "results.tsv"
    return max(len(path.read_text().splitlines()) - 1, 0) if path.exists() else 0

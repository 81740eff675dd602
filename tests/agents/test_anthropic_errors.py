"""Retries, error translation, keys and logging of the AnthropicAgent, through the real SDK."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from autoresearch.agents import agent_from_config
from autoresearch.agents.anthropic import AnthropicAgent
from autoresearch.agents.fake_messages import Delay, Fail, FakeMessagesAPI, message, tool_use
from autoresearch.errors import AgentError, AgentFatal, AgentTransient
from autoresearch.ops.config import Settings
from tests.agents.conftest import KEY, AgentFactory, make_ctx

EDIT = tool_use("str_replace", {"path": "train.py", "old_str": "LR = 0.1", "new_str": "LR = 0.05"})
FINISH = tool_use("finish", {"description": "halve the learning rate"})


def test_429_then_success_honours_retry_after(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path, sleeps: list[float]
) -> None:
    fake.add(
        Fail(429, "slow down", {"retry-after": "0.03"}), message(EDIT), Fail(429, headers={"retry-after-ms": "20"})
    )
    fake.add(message(FINISH))
    proposal = make_agent().propose(make_ctx(research))
    assert sleeps == [pytest.approx(0.03), pytest.approx(0.02)]
    assert len(fake.requests) == 4 and "LR = 0.05" in proposal.content


def test_retry_after_is_capped(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path, sleeps: list[float]
) -> None:
    fake.add(Fail(429, headers={"retry-after": "3600"}), message(EDIT, FINISH))
    make_agent().propose(make_ctx(research))
    assert sleeps == [0.05]  # retry_max_wait_s


def test_burst_of_529s_then_success(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path, sleeps: list[float]
) -> None:
    fake.add(*[Fail(529, "Overloaded")] * 4, Fail(500), Fail(503), message(EDIT, FINISH))
    proposal = make_agent().propose(make_ctx(research))
    assert len(sleeps) == 6 and all(0 <= s <= 0.05 for s in sleeps)  # exponential backoff, capped
    assert proposal.description == "halve the learning rate"


def test_overload_that_outlasts_the_retries_is_transient(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path, sleeps: list[float]
) -> None:
    fake.add(message(tool_use("read_file", {"path": "train.py"})), *[Fail(529, "Overloaded")] * 5)
    with pytest.raises(AgentTransient, match=r"overloaded \(529\)") as info:
        make_agent(max_retries=2).propose(make_ctx(research))
    assert len(fake.requests) == 4 and len(sleeps) == 2
    assert info.value.usage is not None and info.value.usage["input_tokens"] == 100  # the first turn's cost


def test_401_is_fatal_with_a_clear_message(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path, sleeps: list[float]
) -> None:
    fake.add(Fail(401, f"invalid x-api-key {KEY}"))
    with pytest.raises(AgentFatal) as info:
        make_agent().propose(make_ctx(research))
    message_text = str(info.value)
    assert "API key" in message_text and "401" in message_text and "ANTHROPIC_API_KEY" in message_text
    assert KEY not in message_text
    assert info.value.exit_code == 2 and len(fake.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    ("status", "words"),
    [(400, "400 bad request"), (403, "403 forbidden"), (404, "anthropic.model ('claude-haiku-4-5')")],
)
def test_client_errors_abort_at_once(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path, sleeps: list[float], status: int, words: str
) -> None:
    fake.add(Fail(status, f"echo {KEY}"))
    with pytest.raises(AgentFatal, match=re.escape(words)) as info:
        make_agent().propose(make_ctx(research))
    assert KEY not in str(info.value) and "[REDACTED]" in str(info.value)
    assert len(fake.requests) == 1 and sleeps == []


def test_other_4xx_skips_the_iteration(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    fake.add(Fail(413, "too large"))
    with pytest.raises(AgentError, match="413") as info:
        make_agent().propose(make_ctx(research))
    assert type(info.value) is AgentError


def test_timeouts_are_retried(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path, sleeps: list[float]
) -> None:
    fake.add(Delay(1.0, message(EDIT, FINISH)), message(EDIT, FINISH))
    proposal = make_agent(timeout_s=0.2).propose(make_ctx(research))
    assert len(sleeps) == 1 and proposal.description == "halve the learning rate"


def test_connection_refused_is_transient(research: Path, sleeps: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")  # the gateway variable is honoured
    settings = Settings(
        agent="anthropic", anthropic={"max_retries": 3, "retry_initial_s": 0.001, "model": "claude-haiku-4-5"}
    )
    agent = AnthropicAgent.from_config(settings, research, sleep=sleeps.append)
    try:
        with pytest.raises(AgentTransient, match=f"127.0.0.1:{port}"):
            agent.propose(make_ctx(research))
    finally:
        agent.close()
    assert len(sleeps) == 3


def test_base_url_from_the_environment(research: Path, fake: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    fake.add(message(EDIT, FINISH))
    agent = agent_from_config(Settings(agent="anthropic", anthropic={"model": "claude-haiku-4-5"}), research)
    assert isinstance(agent, AnthropicAgent)
    try:
        assert agent.propose(make_ctx(research)).description == "halve the learning rate"
    finally:
        agent.close()


def test_missing_key_is_fatal(research: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(AgentFatal, match="no Anthropic API key: set ANTHROPIC_API_KEY") as info:
        agent_from_config(Settings(agent="anthropic"), research)
    assert info.value.exit_code == 2


def test_key_from_file_and_from_systemd_credentials(
    research: Path, tmp_path: Path, fake: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-key-should-lose")
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    options = {"base_url": fake.url, "api_key_file": str(key_file), "model": "claude-haiku-4-5"}
    agent = AnthropicAgent.from_config(Settings(agent="anthropic", anthropic=options), research)
    fake.add(message(EDIT, FINISH))
    agent.propose(make_ctx(research))
    agent.close()
    assert KEY in fake.requests[-1].headers.get("authorization", "") + fake.requests[-1].headers.get("x-api-key", "")

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "anthropic_api_key").write_text("sk-ant-from-credentials-dir")
    assert "ANTHROPIC_API_KEY" not in os.environ  # the agent took it out of the environment
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    agent = AnthropicAgent.from_config(
        Settings(agent="anthropic", anthropic=options | {"api_key_file": None}), research
    )
    fake.add(message(EDIT, FINISH))
    agent.propose(make_ctx(research))
    agent.close()
    sent = fake.requests[-1].headers
    assert "sk-ant-from-credentials-dir" in sent.get("authorization", "") + sent.get("x-api-key", "")

    key_file.write_text("  \n")
    with pytest.raises(AgentFatal, match="is empty"):
        AnthropicAgent.from_config(Settings(agent="anthropic", anthropic=options), research)


def test_the_key_is_never_logged(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    leak = tool_use("str_replace", {"path": "train.py", "old_str": "LR = 0.1", "new_str": f"LR = 0.05  # {KEY}"})
    fake.add(Fail(529, f"overloaded {KEY}"), message(leak, FINISH))
    with capture_logs() as logs:
        make_agent().propose(make_ctx(research))
    events = {e["event"] for e in logs}
    assert {"anthropic.system_prompt", "anthropic.prompt", "anthropic.reply", "retry.wait"} <= events
    assert KEY not in repr(logs) and "[REDACTED]" in repr(logs)

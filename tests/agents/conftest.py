"""Fixtures for the agent tests: a small research repo, the fake Messages API, agents wired to it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autoresearch.agents.anthropic import AnthropicAgent
from autoresearch.agents.base import ProposalContext
from autoresearch.agents.fake_messages import FakeMessagesAPI
from autoresearch.ops.config import Settings
from tests.conftest import git, make_repo

KEY = "sk-ant-test-0123456789abcdef"

TRAIN = """\
LR = 0.1
STEPS = 10


def main():
    print(f"val_bpb: {LR * STEPS}")


main()
"""
PREPARE = "VOCAB = 256\n"
PROGRAM = "# Program\nMake val_bpb small. Unique marker: PROGRAM-MD-7731.\n"
@pytest.fixture
def research(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "research", train=TRAIN, extra={"prepare.py": PREPARE, "program.md": PROGRAM})


def make_ctx(repo: Path, **changes: Any) -> ProposalContext:
    ctx = ProposalContext(
        n=1,
        repo=repo,
        target="train.py",
        readonly=("prepare.py",),
        metric="val_bpb",
        direction="min",
        best_commit=git(repo, "rev-parse", "HEAD"),
        best_content=(repo / "train.py").read_text(),
        best_metric=1.0,
        history=(),
        last_crash_log=None,
        crash_streak=0,
        stale_streak=0,
    )
    return dataclasses.replace(ctx, **changes)


@pytest.fixture
def fake() -> Iterator[FakeMessagesAPI]:
    with FakeMessagesAPI() as api:
        yield api


@pytest.fixture
def sleeps() -> list[float]:
    return []


AgentFactory = Callable[..., AnthropicAgent]


@pytest.fixture
def make_agent(
    research: Path, fake: FakeMessagesAPI, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> Iterator[AgentFactory]:
    """Agents built by from_config (the real path: key from the environment, the real SDK client)."""
    made: list[AnthropicAgent] = []
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)

    def make(limits: dict[str, Any] | None = None, **anthropic: Any) -> AnthropicAgent:
        # claude-haiku-4-5: priced in the default table and not flagged as deprecated by the SDK.
        options = {
            "base_url": fake.url,
            "model": "claude-haiku-4-5",
            "retry_initial_s": 0.001,
            "retry_max_wait_s": 0.05,
            **anthropic,
        }
        settings = Settings(agent="anthropic", readonly=["prepare.py"], anthropic=options, limits=limits or {})
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)  # each build takes it out of the environment again
        agent = AnthropicAgent.from_config(settings, research, sleep=sleeps.append)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


def request_text(body: dict[str, Any]) -> str:
    """All the text a request carries (system, messages, tool results), for assertions."""
    parts = [b.get("text", "") for b in body.get("system", [])]
    for msg in body["messages"]:
        content = msg["content"]
        if isinstance(content, str):
            parts.append(content)
            continue
        for block in content:
            parts.append(str(block.get("text") or block.get("content") or block.get("input") or ""))
    return "\n".join(parts)

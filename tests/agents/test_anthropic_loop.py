"""The full loop: the bundled example, the process runner and the AnthropicAgent against the fake API
(its ToyResearcher appends a comment to train.py each time), through the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoresearch.agents.fake_messages import FakeMessagesAPI, ToyResearcher
from autoresearch.journal.store import Journal
from tests.agents.conftest import KEY, request_text
from tests.conftest import GIT_ENV, NO_CGROUPS, NO_REPEATS

pytestmark = pytest.mark.slow


def autoresearch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AUTORESEARCH_"))}
    return subprocess.run(
        [sys.executable, "-m", "autoresearch", *args], capture_output=True, text=True, timeout=300,
        env={**clean, **GIT_ENV, **NO_REPEATS, **NO_CGROUPS, **(env or {})},
    )  # fmt: skip


def test_three_iterations_on_the_example_then_a_restart(tmp_path: Path) -> None:
    repo = tmp_path / "example"
    for args in (("example", str(repo)), ("init", str(repo), "--tag", "t")):
        done = autoresearch(*args, env={"AUTORESEARCH_BUDGET": "3"})  # a measured key: pinned by init
        assert done.returncode == 0, done.stderr
    run = ("run", str(repo), "--agent", "anthropic", "--budget", "3", "--grace", "120")
    with FakeMessagesAPI(fallback=ToyResearcher("train.py")) as fake:
        # No drafting ahead: the toy's edits all append at the end of train.py, so a draft made while the
        # previous run trains conflicts with its keep and is dropped (the pipelined loop's rule).
        env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.url,
               "AUTORESEARCH_ANTHROPIC__MODEL": "claude-haiku-4-5", "AUTORESEARCH_PROPOSALS__AHEAD": "0"}  # fmt: skip
        done = autoresearch(*run, "--max-experiments", "3", env=env)
        assert done.returncode == 0, done.stderr + done.stdout
        rows = (repo / "results.tsv").read_text().splitlines()[1:]
        assert len(rows) == 3 and "baseline" in rows[0]
        assert [r.split("\t")[4] for r in rows[1:]] == ["toy experiment 1", "toy experiment 2"]
        journal = Journal(repo / ".git" / "autoresearch" / "journal.jsonl")
        assert journal.load().agent_state == {"notes": "toy notes after experiment 2"}
        costs = [e.usage.cost_usd or 0.0 for e in journal.load().completed()]
        assert costs[0] == 0.0 and all(c > 0 for c in costs[1:])

        # A restart (a new process) feeds the journaled notes back to the agent.
        done = autoresearch(*run, "--max-experiments", "4", env=env)
        assert done.returncode == 0, done.stderr + done.stdout
        assert len((repo / "results.tsv").read_text().splitlines()) == 5
        assert "toy notes after experiment 2" in request_text(fake.requests[-3].body)
        assert "autonomous researcher" in fake.requests[-3].body["system"][0]["text"]
    status = autoresearch("status", str(repo), "--json")
    assert status.returncode == 0 and "cost" in status.stdout

"""What the LLM agent sees of past runs, through the loop, the real SDK and the fake Messages API: the
history table's memory and cause columns, the crash tail at ``anthropic.max_log_chars`` and the
``read_run_log`` tool."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoresearch.agents.anthropic import AnthropicAgent
from autoresearch.agents.base import HistoryEntry
from autoresearch.agents.fake_messages import FakeMessagesAPI, message, tool_use
from autoresearch.agents.prompts import history_rows
from autoresearch.coordinator.loop import Loop
from autoresearch.git.workspace import FakeWorkspace
from autoresearch.ops.config import Settings
from autoresearch.runners.base import FakeRunner
from autoresearch.sessions.session import Session
from tests.agents.conftest import KEY, AgentFactory, make_ctx, request_text
from tests.loop_fakes import TARGET

HEAD = "".join(f"step {i:05d} | loss: {9 - i / 1000:.4f} | warming up\n" for i in range(400))  # ~17 KB
CRASH_LOG = "START-OF-LOG\n" + HEAD + "Traceback (most recent call last):\nRuntimeError: CUDA out of memory\n"


def edit(old: str, new: str, description: str) -> list[dict[str, object]]:
    return [
        tool_use("str_replace", {"path": "train.py", "old_str": old, "new_str": new}),
        tool_use("finish", {"description": description}),
    ]


def tool_results(body: dict[str, object]) -> list[dict[str, object]]:
    messages = body["messages"]
    assert isinstance(messages, list)
    return [b for b in messages[-1]["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


@pytest.fixture
def loop(tmp_path: Path, fake: FakeMessagesAPI, monkeypatch: pytest.MonkeyPatch) -> Loop:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    ws = FakeWorkspace(root=tmp_path, files={"train.py": TARGET})
    ws.create_branch("autoresearch/t")
    settings = Settings(
        target="train.py", budget=1.0, agent="anthropic", limits={"max_experiments": 3}, noise={"repeats": 0},
        proposals={"ahead": 0},  # each proposal sees the run before it (its crash tail)
        anthropic={"base_url": fake.url, "model": "claude-haiku-4-5", "max_log_chars": 10000},
    )  # fmt: skip
    runs = [("val_bpb: 2.0\npeak_vram_mb: 45056\n", "ok"), (CRASH_LOG, "oom"), ("val_bpb: 1.9\n", "ok")]
    return Loop(
        settings=settings,
        session=Session(repo=tmp_path, state_dir=tmp_path / ".git" / "autoresearch", tag="t"),
        workspace=ws,
        runner=FakeRunner(script=runs),
        agent=AnthropicAgent.from_config(settings, tmp_path),
        idle_wait_s=lambda _k: 0.0,
    )


def test_the_agent_sees_memory_causes_the_long_crash_tail_and_any_runs_log(
    loop: Loop, fake: FakeMessagesAPI, tmp_path: Path
) -> None:
    fake.add(
        message(*edit("LR = 0.5", "LR = 0.9", "raise LR")),
        message(tool_use("read_run_log", {"n": 1, "offset": 0}), tool_use("read_run_log", {"n": 0})),
        message(*edit("WIDTH = 8", "WIDTH = 16", "wider")),
    )
    assert loop.run().reason.startswith("max_experiments")
    bodies = fake.bodies()
    assert len(bodies) == 3
    context = request_text(bodies[1])
    # The history table: memory_gb and cause are columns, for every row.
    header = next(line for line in context.splitlines() if line.lstrip().startswith("n  commit"))
    assert header.split() == ["n", "commit", "val_bpb", "memory_gb", "status", "cause", "description"]
    baseline_row = next(line for line in context.splitlines() if "baseline" in line)
    assert "44.0" in baseline_row and "keep" in baseline_row
    crash_row = next(line for line in context.splitlines() if "raise LR" in line)
    assert "crash" in crash_row and "oom" in crash_row
    # The crash tail is max_log_chars long (10000 here), not the old fixed 4000 bytes.
    tail = context[context.index("Its log tail:") :]
    assert "RuntimeError: CUDA out of memory" in tail and "START-OF-LOG" not in tail
    shown = [line for line in tail.splitlines() if line.startswith("step ")]
    assert 9000 < sum(len(line) + 1 for line in shown) <= 10000
    # read_run_log: any run's log, from an offset or (by default) its tail.
    start, baseline = tool_results(bodies[2])
    assert str(start["content"]).startswith("START-OF-LOG\nstep 00000")
    assert "offset=10000" in str(start["content"]) and "is_error" not in start
    assert str(baseline["content"]).startswith("val_bpb: 2.0")
    system = "\n".join(block["text"] for block in bodies[0]["system"])
    assert "The daemon does program.md's setup and bookkeeping itself" in system and "`run.log`" in system


def test_read_run_log_errors_and_symlinks(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    runs = research / ".git" / "autoresearch" / "runs"
    (runs / "1").mkdir(parents=True)
    (runs / "1" / "run.log").write_text("x" * 600 + "THE-END\n")
    (runs / "2").mkdir()
    os.symlink(research / "prepare.py", runs / "2" / "run.log")
    fake.add(
        message(
            tool_use("read_run_log", {"n": 1}),
            tool_use("read_run_log", {"n": 2}),
            tool_use("read_run_log", {"n": 9}),
            tool_use("read_run_log", {"n": "1"}),
        ),
        message(*edit("LR = 0.1", "LR = 0.05", "halve LR")),
    )
    ctx = make_ctx(research, runs_dir=runs)
    proposal = make_agent(max_log_chars=500).propose(ctx)
    assert proposal.meta["fix_attempts"] == 1  # only the malformed call counts as a bad proposal
    tail, link, missing, malformed = tool_results(fake.bodies()[1])
    assert str(tail["content"]).endswith("THE-END\n\n[run 1's log: bytes 108-608 of 608; earlier: offset=0]")
    assert link["is_error"] is True and "VOCAB" not in str(link["content"])
    assert missing["is_error"] is True and "no run log" in str(missing["content"])
    assert malformed["is_error"] is True and "'n' must be" in str(malformed["content"])


def test_history_columns_unknown_memory_and_a_crash_without_metric() -> None:
    rows = history_rows(
        [
            HistoryEntry(0, "abcdef01", "keep", 1.0, "baseline", "ok", {}, memory_gb=12.25),
            HistoryEntry(1, "bcdef012", "crash", None, "bigger", "timeout", {}),
            HistoryEntry(2, "cdef0123", "crash", None, "printed nothing", "ok", {}, memory_gb=0.0),
        ],
        "abcdef01",
    )
    assert rows[2].split()[:6] == ["2", "cdef012", "-", "0.0", "crash", "no"] and "no metric" in rows[2]
    assert rows[0].split()[:6] == ["*", "0", "abcdef0", "1.000000", "12.2", "keep"]
    assert rows[1].split()[:6] == ["1", "bcdef01", "-", "-", "crash", "timeout"]

"""AnthropicAgent conversations through the real SDK against the local fake Messages API."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch.agents.base import HistoryEntry
from autoresearch.agents.fake_messages import FakeMessagesAPI, message, text, tool_use, usage
from autoresearch.errors import AgentFatal, ProposalRejected
from tests.agents.conftest import KEY, PROGRAM, AgentFactory, make_ctx, request_text

EDIT = tool_use("str_replace", {"path": "train.py", "old_str": "LR = 0.1", "new_str": "LR = 0.05"})


def finish(description: str = "halve the learning rate", notes: str | None = None) -> dict[str, object]:
    args: dict[str, object] = {"description": description}
    if notes is not None:
        args["notes"] = notes
    return tool_use("finish", args)


def last_results(fake: FakeMessagesAPI, index: int = -1) -> list[dict[str, object]]:
    """The tool_result blocks the agent sent in request ``index``."""
    content = fake.bodies()[index]["messages"][-1]["content"]
    return [b for b in content if b.get("type") == "tool_result"]


def test_tool_use_edit_produces_a_proposal(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    fake.add(
        message(text("Let me look."), tool_use("read_file", {"path": "train.py"})),
        message(EDIT),
        message(finish("halve the learning rate\nsecond line dropped", notes="tried LR 0.05")),
    )
    proposal = make_agent().propose(make_ctx(research))
    assert "LR = 0.05" in proposal.content and "LR = 0.1" not in proposal.content
    assert proposal.description == "halve the learning rate"
    assert proposal.agent_state == {"notes": "tried LR 0.05"}
    assert proposal.meta["turns"] == 3 and proposal.meta["fix_attempts"] == 0
    assert proposal.usage.input_tokens == 300 and proposal.usage.output_tokens == 150
    assert (research / "train.py").read_text().count("LR = 0.1") == 1  # the repo itself is never touched
    first = fake.requests[0]
    assert KEY in (first.headers.get("x-api-key"), first.headers.get("authorization", "").removeprefix("Bearer "))
    assert first.body["model"] == "claude-haiku-4-5" and "thinking" not in first.body
    tools = [t["name"] for t in first.body["tools"]]
    assert tools == ["read_file", "read_run_log", "str_replace", "write_file", "finish"]
    assert "PROGRAM-MD-7731" in first.body["system"][0]["text"]
    assert "only `train.py`" in request_text(first.body) or "Edit only `train.py`" in request_text(first.body)
    assert "VOCAB = 256" in first.body["system"][-1]["text"]  # read-only files in the system prompt
    read = last_results(fake, 1)
    assert read[0]["content"] == (research / "train.py").read_text() and "is_error" not in read[0]


def test_edit_that_fails_to_apply_is_fed_back_then_fixed(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path
) -> None:
    wrong = tool_use("str_replace", {"path": "train.py", "old_str": "LR = 0.3", "new_str": "LR = 0.05"})
    fake.add(message(wrong), message(EDIT, finish()))
    proposal = make_agent().propose(make_ctx(research))
    result = last_results(fake, 1)[0]
    assert result["is_error"] is True and "was not found" in str(result["content"])
    assert "LR = 0.05" in proposal.content and proposal.meta["fix_attempts"] == 1


def test_gives_up_after_max_fix_attempts_and_reports_the_cost(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path
) -> None:
    wrong = {"path": "train.py", "old_str": "nope", "new_str": "x"}
    fake.add(message(tool_use("str_replace", wrong)), message(tool_use("str_replace", wrong)))
    with pytest.raises(ProposalRejected, match="gave up after 2") as info:
        make_agent(max_fix_attempts=1).propose(make_ctx(research))
    assert len(fake.requests) == 2
    assert info.value.usage is not None and info.value.usage["input_tokens"] == 200
    assert info.value.usage["cost_usd"] > 0


def test_code_that_does_not_compile_is_fed_back(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path
) -> None:
    broken = tool_use("write_file", {"path": "train.py", "content": "def main(:\n    pass\n"})
    fixed = tool_use("write_file", {"path": "train.py", "content": "LR = 0.2\n"})
    fake.add(message(broken), message(finish()), message(fixed, finish("rewrite")))
    proposal = make_agent().propose(make_ctx(research))
    assert "does not compile" in str(last_results(fake, 1)[0]["content"])  # early note on the edit
    refused = last_results(fake, 2)[0]
    assert refused["is_error"] is True and "Not submitted" in str(refused["content"])
    assert proposal.content == "LR = 0.2\n" and proposal.meta["fix_attempts"] == 1


def test_an_edit_to_another_file_is_refused(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    other = tool_use("write_file", {"path": "prepare.py", "content": "VOCAB = 1\n"})
    escape = tool_use("read_file", {"path": "../outside.txt"})
    fake.add(message(other, escape), message(EDIT, finish()))
    proposal = make_agent().propose(make_ctx(research))
    refused, outside = last_results(fake, 1)
    assert refused["is_error"] is True and "only train.py may be edited" in str(refused["content"])
    assert outside["is_error"] is True and "outside the repo" in str(outside["content"])
    assert (research / "prepare.py").read_text() == "VOCAB = 256\n"
    assert proposal.meta["fix_attempts"] == 1  # reading outside is an error, not a bad proposal


def test_no_edit_and_no_tool_call_are_fed_back(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    fake.add(message(finish()), message(text(""), text("Shall I continue?")), message(EDIT, finish()))
    proposal = make_agent().propose(make_ctx(research))
    assert "No edit" in str(last_results(fake, 1)[0]["content"])
    nudge = fake.bodies()[2]["messages"][-1]["content"]
    assert nudge[0]["type"] == "text" and "without calling a tool" in nudge[0]["text"]
    assert proposal.meta["fix_attempts"] == 2


def test_malformed_tool_input_is_fed_back(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    fake.add(
        message(
            tool_use("str_replace", {"path": "train.py", "old_str": "LR = 0.1"}),
            tool_use("write_file", {"path": "train.py", "content": 42}),
            tool_use("delete_file", {"path": "train.py"}),
            tool_use("read_file", {"path": "train.py", "offset": -3}),
        ),
        message(EDIT, tool_use("finish", {"description": "   "})),
        message(finish()),
    )
    proposal = make_agent(max_fix_attempts=5).propose(make_ctx(research))
    results = last_results(fake, 1)
    assert all(r["is_error"] is True for r in results)
    assert "'new_str' is missing" in str(results[0]["content"])
    assert "a int, not a string" in str(results[1]["content"])
    assert "unknown tool 'delete_file'" in str(results[2]["content"])
    assert "'description' is empty" in str(last_results(fake, 2)[1]["content"])
    assert "LR = 0.05" in proposal.content and proposal.meta["fix_attempts"] == 5


def test_turn_limit(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    fake.add(*[message(tool_use("read_file", {"path": "."})) for _ in range(3)])
    with pytest.raises(ProposalRejected, match="within 3 turns"):
        make_agent(max_turns=3).propose(make_ctx(research))


def test_costs_and_cache_tokens_are_summed(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    fake.add(
        message(EDIT, tokens=usage(1000, 200, cache_read=5000, cache_write=3000)),
        message(finish(), tokens=usage(500, 100, cache_read=8000, cache_write=0)),
    )
    proposal = make_agent(model="claude-haiku-4-5-20251001").propose(make_ctx(research))
    u = proposal.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (1500, 300, 13000, 3000)
    expected = (1500 * 1.0 + 300 * 5.0 + 13000 * 0.1 + 3000 * 1.25) / 1e6  # the dated id uses its family's price
    assert u.cost_usd == pytest.approx(expected)


def test_unknown_model_price(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    with pytest.raises(AgentFatal, match="no price for model"):
        make_agent(limits={"max_cost_usd": 5.0}, model="my-gateway-model")
    fake.add(message(EDIT, finish()))
    assert make_agent(model="my-gateway-model").propose(make_ctx(research)).usage.cost_usd == 0.0
    prices = {"my-gateway-model": {"input": 1.0, "output": 2.0, "cache_read": 0.0, "cache_write": 0.0}}
    fake.add(message(EDIT, finish()))
    priced = make_agent(limits={"max_cost_usd": 5.0}, model="my-gateway-model", prices=prices)
    assert priced.propose(make_ctx(research)).usage.cost_usd == pytest.approx((100 * 1.0 + 50 * 2.0) / 1e6)


def test_notes_are_returned_and_fed_back(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    agent = make_agent()
    fake.add(message(EDIT, finish(notes="idea: warmup helps; LR 0.05 tried")))
    first = agent.propose(make_ctx(research))
    assert "(empty" in request_text(fake.bodies()[0])
    assert first.agent_state == {"notes": "idea: warmup helps; LR 0.05 tried"}
    fake.add(message(EDIT, finish()))
    second = agent.propose(make_ctx(research, n=2, agent_state=first.agent_state))
    assert "idea: warmup helps; LR 0.05 tried" in request_text(fake.bodies()[1])
    assert second.agent_state is None  # no notes given: the journal keeps the old ones


def test_history_crash_log_and_escalation_in_the_prompt(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path
) -> None:
    history = tuple(
        HistoryEntry(i, f"{i:07x}abc", status, metric, f"idea {i}", "exit:1" if status == "crash" else "ok", {})
        for i, (status, metric) in enumerate(
            [("keep", 2.0), ("keep", 1.5)] + [("discard", 1.7)] * 23 + [("crash", None)]
        )
    )
    ctx = make_ctx(
        research,
        history=history,
        best_commit="0000001abc",
        last_crash_log="Traceback\nValueError: boom",
        crash_streak=1,
        stale_streak=4,
    )
    agent = make_agent(escalate_after=5)
    fake.add(message(EDIT, finish()), message(EDIT, finish()))
    agent.propose(ctx)
    agent.propose(make_ctx(research, stale_streak=5))
    body = fake.bodies()[0]
    blocks = body["messages"][0]["content"]
    assert "rows 1-20" in blocks[0]["text"] and "cache_control" in blocks[0]  # older history: cached
    assert "*   1  0000001" in blocks[0]["text"] and "idea 19" in blocks[0]["text"]
    assert "idea 25" in blocks[2]["text"] and "crash    exit:1" in blocks[2]["text"]
    assert "ValueError: boom" in blocks[2]["text"] and "1 crash(es) in a row" in blocks[2]["text"]
    assert "You are stuck" not in request_text(body)
    escalated = request_text(fake.bodies()[1])
    assert "You are stuck: 5 runs in a row" in escalated and "Reverse an assumption" in escalated


def test_prompt_caching_breakpoints(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    fake.add(message(tool_use("read_file", {"path": "prepare.py"})), message(EDIT, finish()))
    make_agent().propose(make_ctx(research))
    for body in fake.bodies():
        assert "cache_control" in body["system"][-1]  # tools + system prompt + read-only files
        assert "cache_control" in body["messages"][-1]["content"][-1]  # the rolling breakpoint
    second = fake.bodies()[1]["messages"]
    assert "cache_control" in second[0]["content"][0]  # the best target stays a breakpoint
    assert "cache_control" not in second[0]["content"][-1]  # the first turn's rolling one moved on
    assert PROGRAM.strip() in fake.bodies()[0]["system"][0]["text"]


def test_thinking_blocks_are_sent_back(make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path) -> None:
    thinking = {"type": "thinking", "thinking": "Lower LR might help.", "signature": "sig-123"}
    fake.add(message(thinking, EDIT), message(finish()))
    make_agent(thinking_budget=2048, max_tokens=4096).propose(make_ctx(research))
    first, second = fake.bodies()
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert second["messages"][1]["content"][0] == thinking

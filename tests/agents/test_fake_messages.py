"""The packaged fake Messages API itself, the toy researcher, and the edit session's read_file."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import anthropic
import pytest

from autoresearch.agents.fake_messages import FakeMessagesAPI, ToyResearcher, check_request, message, text, tool_use
from autoresearch.agents.tools import EditSession
from tests.agents.conftest import AgentFactory, make_ctx, request_text
from tests.subprocs import interruptible, reaped

USER = {"role": "user", "content": "hi"}


def body(*messages: dict[str, object], **extra: object) -> dict[str, object]:
    return {"model": "m", "max_tokens": 100, "messages": list(messages), **extra}


def test_check_request_catches_what_the_api_rejects() -> None:
    call = {"role": "assistant", "content": [tool_use("read_file", {"path": "x"}, block_id="t1")]}
    answer = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
    assert check_request(body(USER, call, answer)) is None
    assert "tool_result" in str(check_request(body(USER, call, USER)))
    assert "alternate" in str(check_request(body(USER, USER)))
    assert "non-empty" in str(check_request(body({"role": "user", "content": [text("")]})))
    cached = [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}] * 5
    assert "maximum of 4" in str(check_request(body({"role": "user", "content": cached})))
    assert "budget_tokens" in str(check_request(body(USER, thinking={"type": "enabled", "budget_tokens": 500})))
    assert "at least one message" in str(check_request(body()))


def test_unknown_path_and_exhausted_script() -> None:
    with FakeMessagesAPI([message(text("hello"))]) as fake:
        client = anthropic.Anthropic(api_key="k", base_url=fake.url, max_retries=0)
        try:
            reply = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
            assert reply.content[0].type == "text" and reply.stop_reason == "end_turn"
            with pytest.raises(anthropic.BadRequestError, match="script exhausted"):
                client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}])
            with pytest.raises(anthropic.NotFoundError):
                client.models.retrieve("m")
        finally:
            client.close()


def test_toy_researcher_drives_three_iterations(
    make_agent: AgentFactory, fake: FakeMessagesAPI, research: Path
) -> None:
    fake.fallback = ToyResearcher("train.py")
    agent = make_agent()
    state: dict[str, object] = {}
    for n in (1, 2, 3):
        proposal = agent.propose(make_ctx(research, n=n, agent_state=state))
        assert proposal.description == f"toy experiment {n}" and f"# toy experiment {n}" in proposal.content
        assert proposal.usage.cache_read_tokens == 500
        assert proposal.agent_state is not None
        state = proposal.agent_state
    assert "toy notes after experiment 2" in request_text(fake.requests[-3].body)


def test_command_line_serves_until_interrupted() -> None:
    # Ctrl-C reaches the server even when pytest runs as a background job (SIGINT ignored there).
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoresearch.agents.fake_messages", "--target", "train.py"],
        stdout=subprocess.PIPE, text=True, preexec_fn=interruptible,
    )  # fmt: skip
    with reaped(proc):
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ANTHROPIC_BASE_URL=http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_read_file_cuts_long_files_and_stays_inside_the_repo(research: Path) -> None:
    (research / "big.txt").write_text("x" * 2500)
    (research / "data").mkdir()
    (research / "data" / "a.bin").write_bytes(b"\0\1\2")
    session = EditSession(research, "train.py", "DRAFT = 1\n", max_chars=1000)
    first = session.handle("read_file", {"path": "big.txt"}).text
    assert first.startswith("x" * 1000) and "[cut: characters 0-1000 of 2500; call read_file with offset=1000" in first
    last = session.handle("read_file", {"path": "big.txt", "offset": 2000}).text
    assert last.endswith("[cut: characters 2000-2500 of 2500]")
    assert session.handle("read_file", {"path": "./train.py"}).text == "DRAFT = 1\n"  # the draft, not the disk
    assert session.handle("read_file", {"path": ".git/config"}).is_error
    assert session.handle("read_file", {"path": str(research.parent)}).is_error
    assert session.handle("read_file", {"path": "missing.py"}).is_error
    listing = session.handle("read_file", {"path": "."}).text.splitlines()
    assert "data/" in listing and "train.py" in listing and ".git" not in listing and ".git/" not in listing
    assert "binary file, 3 bytes" in session.handle("read_file", {"path": "data/a.bin"}).text
    assert not any(r.strike for r in [session.handle("read_file", {"path": "nope"})])


def test_str_replace_needs_a_unique_match(research: Path) -> None:
    session = EditSession(research, "train.py", "A = 1\nA = 1\n", max_chars=1000)
    twice = session.handle("str_replace", {"path": "train.py", "old_str": "A = 1", "new_str": "A = 2"})
    assert twice.strike and "occurs 2 times" in twice.text
    empty = session.handle("str_replace", {"path": "train.py", "old_str": "", "new_str": "B"})
    assert empty.strike and "is empty" in empty.text
    ok = session.handle("str_replace", {"path": str(research / "train.py"), "old_str": "A = 1\nA", "new_str": "B"})
    assert not ok.is_error and session.draft == "B = 1\n"

"""After too many failed proposals in a row the loop escalates: the agents are shown the errors."""

from __future__ import annotations

from pathlib import Path

from autoresearch.agents import prompts
from tests.agents.conftest import make_ctx
from tests.agents.test_command_agent import cli_script, make, probe  # noqa: F401 (fixtures)

ERRORS = ("train.py does not compile: invalid syntax (line 3)", "the proposal does not change the target")


def test_recent_errors_are_in_the_context_only_when_escalated(research: Path) -> None:
    calm = prompts.context_sections(make_ctx(research), escalate_after=5, max_log_chars=2000).markdown()
    assert "proposals failed" not in calm
    ctx = make_ctx(research, recent_errors=ERRORS)
    text = prompts.context_sections(ctx, escalate_after=5, max_log_chars=2000).markdown()
    assert "# Your recent proposals failed before any run; the last 2 errors:" in text
    assert all(f"- {e}" in text for e in ERRORS)


def test_a_command_agent_gets_the_errors_in_its_context_file(research: Path, cli_script: Path,  # noqa: F811
                                                             probe: Path) -> None:  # noqa: F811
    make(research, cli_script, "edit").propose(make_ctx(research, recent_errors=ERRORS))
    context = (probe / "context.md").read_text()
    assert ERRORS[0] in context and ERRORS[1] in context

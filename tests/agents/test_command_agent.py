"""CommandAgent with a small script standing in for a coding-agent CLI."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from autoresearch.agents import agent_from_config
from autoresearch.agents.base import HistoryEntry
from autoresearch.agents.command import NOTES_FILE, CommandAgent
from autoresearch.errors import AgentError, AgentFatal, ProposalRejected
from autoresearch.ops.config import CommandAgentSettings, Settings
from autoresearch.runners import procs
from tests.agents.conftest import make_ctx
from tests.conftest import git
from tests.runners.process_helpers import marked_pids, token

# The stand-in CLI: its first argument picks a behaviour; it is run in the scratch checkout.
FAKE_CLI = r"""
import os, subprocess, sys, time
from pathlib import Path

mode, target, context, prompt = sys.argv[1:5]
Path(os.environ["PROBE"], "context.md").write_text(Path(context).read_text())
Path(os.environ["PROBE"], "prompt.txt").write_text(prompt)
Path(os.environ["PROBE"], "notes_in.txt").write_text(Path(".autoresearch-notes").read_text())
text = Path(target).read_text()
if mode in ("edit", "two_files", "last_line"):
    Path(target).write_text(text.replace("LR = 0.1", "LR = 0.02"))
    Path(".autoresearch-notes").write_text("notes: LR 0.02 tried")
if mode == "two_files":
    Path("prepare.py").write_text("VOCAB = 1\n")
    Path("extra.txt").write_text("stray\n")
if mode in ("edit", "two_files"):
    Path(".autoresearch-description").write_text("lower LR to 0.02\nignored second line\n")
if mode == "broken":
    Path(target).write_text("def main(:\n")
if mode == "hang":
    mark = Path(os.environ["PROBE"], "mark.txt").read_text()
    child = subprocess.Popen(["sleep", mark], start_new_session=True)
    time.sleep(60)
print("working...")
print("Lowered the learning rate to 0.02")
sys.exit(3 if mode == "fail" else 0)
"""


@pytest.fixture
def cli_script(tmp_path: Path) -> Path:
    path = tmp_path / "fake_cli.py"
    path.write_text(FAKE_CLI)
    return path


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "probe"
    folder.mkdir()
    monkeypatch.setenv("PROBE", str(folder))
    return folder


def make(repo: Path, script: Path, mode: str, **options: object) -> CommandAgent:
    """The agent as from_config builds it, sandboxed; the stand-in CLI and the probe folder are let in."""
    command = f"{sys.executable} {script} {mode} {{target}} {{context}} {{prompt}}"
    allow = [*CommandAgentSettings().env_allow, "PROBE"]
    sandbox = {"mounts": [str(script)], "writable": [os.environ["PROBE"]], "env_allow": allow}
    settings = Settings(agent="command", readonly=["prepare.py"],
                        command_agent={"command": command, **sandbox, **options})
    agent = agent_from_config(settings, repo)
    assert isinstance(agent, CommandAgent)
    return agent


def assert_clean(repo: Path) -> None:
    """No scratch checkout left behind, and the research tree untouched."""
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    scratch = repo / ".git" / "autoresearch" / "scratch"
    assert not scratch.exists() or not any(scratch.iterdir())
    assert git(repo, "status", "--porcelain") == ""


def test_edit_becomes_a_proposal(research: Path, cli_script: Path, probe: Path) -> None:
    history = (
        HistoryEntry(0, "abcdef0123", "keep", 1.0, "baseline", "ok", {}, memory_gb=44.0),
        HistoryEntry(1, "bcdef01234", "crash", None, "wider", "oom", {}, memory_gb=79.5),
    )
    runs = research / ".git" / "autoresearch" / "runs"
    ctx = make_ctx(research, history=history, agent_state={"notes": "old notes"}, last_crash_log="OOM at step 3",
                   runs_dir=runs)
    proposal = make(research, cli_script, "edit").propose(ctx)
    assert "LR = 0.02" in proposal.content
    assert proposal.description == "lower LR to 0.02"
    assert proposal.agent_state == {"notes": "notes: LR 0.02 tried"}
    assert proposal.meta["exit_code"] == 0 and proposal.meta["dropped"] == []
    context = (probe / "context.md").read_text()
    assert "Edit only `train.py`" in context and "baseline" in context and "OOM at step 3" in context
    assert "old notes" in context and (probe / "notes_in.txt").read_text() == "old notes"
    assert "memory_gb" in context and "79.5" in context and " oom " in context  # the history's columns
    assert "`/runs/<n>/run.log`" in context and "setup and bookkeeping" in context  # where the sandbox shows them
    assert "editing only train.py" in (probe / "prompt.txt").read_text()  # {prompt} arrives as one argument
    assert_clean(research)


def test_only_the_target_is_taken(research: Path, cli_script: Path, probe: Path) -> None:
    with capture_logs() as logs:
        proposal = make(research, cli_script, "two_files").propose(make_ctx(research))
    assert "LR = 0.02" in proposal.content
    assert proposal.meta["dropped"] == ["extra.txt", "prepare.py"]
    warning = next(e for e in logs if e["event"] == "command_agent.dropped_changes")
    assert warning["log_level"] == "warning" and warning["paths"] == ["extra.txt", "prepare.py"]
    assert (research / "prepare.py").read_text() == "VOCAB = 256\n" and not (research / "extra.txt").exists()
    assert_clean(research)


def test_description_from_the_last_output_line(research: Path, cli_script: Path, probe: Path) -> None:
    proposal = make(research, cli_script, "last_line").propose(make_ctx(research))
    assert proposal.description == "Lowered the learning rate to 0.02"


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        ("noop", ProposalRejected, "did not change train.py"),
        ("broken", ProposalRejected, "does not compile"),
        ("fail", AgentError, "exited with status 3"),
    ],
)
def test_bad_runs_skip_the_iteration(
    research: Path, cli_script: Path, probe: Path, mode: str, error: type[AgentError], words: str
) -> None:
    with pytest.raises(error, match=words):
        make(research, cli_script, mode).propose(make_ctx(research))
    assert_clean(research)


def test_timeout_kills_everything_the_agent_started(research: Path, cli_script: Path, probe: Path) -> None:
    mark = token()
    (probe / "mark.txt").write_text(mark)
    agent = make(research, cli_script, "hang", timeout_s=1.0, kill_grace_s=0.2)
    started = time.monotonic()
    with pytest.raises(AgentError, match="timed out after 1 s"):
        agent.propose(make_ctx(research))
    assert time.monotonic() - started < 30
    assert procs.wait_gone(lambda: marked_pids(mark), 10.0)  # its own session did not save it
    assert_clean(research)


def test_missing_program_and_empty_command_are_fatal(research: Path) -> None:
    settings = Settings(agent="command", command_agent={"command": "no-such-agent-cli-xyz {prompt}"})
    with pytest.raises(AgentFatal, match="not found"):
        agent_from_config(settings, research).propose(make_ctx(research))
    with pytest.raises(AgentFatal, match=r"command_agent\.command is empty"):
        agent_from_config(Settings(agent="command"), research)
    assert_clean(research)


def test_leftover_scratch_from_a_crash_is_replaced(research: Path, cli_script: Path, probe: Path) -> None:
    stale = research / ".git" / "autoresearch" / "scratch" / "1"
    stale.mkdir(parents=True)
    (stale / "junk").write_text("from a crash")
    assert "LR = 0.02" in make(research, cli_script, "edit").propose(make_ctx(research)).content
    assert_clean(research)
    assert not (research / NOTES_FILE).exists()


"""CommandAgent (``--agent command``): an external coding-agent CLI (``claude -p``, ``codex exec``, ...)
edits the target in a scratch checkout of the best commit; only the target's new text is taken.

The command gets a context file (the rules, history, best target, notes, crash log, task), the notes in
``.autoresearch-notes`` (read back afterwards: the scratchpad survives across iterations) and reports
its description in the description file, or as its last line of output. Changes to other files are
logged and dropped. The CLI runs in a bubblewrap sandbox (``agents/sandbox.py``) where it can write only
its checkout and its own config folders; everything it started is killed at the timeout.
"""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from autoresearch.agents import prompts
from autoresearch.agents.base import Proposal, ProposalContext, check_python
from autoresearch.agents.sandbox import AgentJail
from autoresearch.agents.scratch import changed_paths, manifest, read_inside, scratch_checkout
from autoresearch.errors import AgentError, AgentFatal, ProposalRejected
from autoresearch.ops.config import CommandAgentSettings, Settings

log = structlog.get_logger("autoresearch.agents.command")

NOTES_FILE = ".autoresearch-notes"
TAIL_CHARS = 2000

PROMPT = (
    "You are running unattended as an ML research agent: nobody will answer questions. Read {context} "
    "(the rules, the experiment history, your notes and the task) and {program}. Then make ONE experiment by "
    "editing only {target} in the current directory, write a one-line description of the change to "
    "{description_file}, and update your notes in {notes_file}."
)


@dataclass
class CommandAgent:
    """Runs ``settings.command`` in a scratch checkout and takes the target's new content from it."""

    settings: CommandAgentSettings
    repo: Path
    budget_s: float | None = None
    escalate_after: int = 5
    max_log_chars: int = 8000
    jail: AgentJail | None = None
    """How the command runs; None: as ``settings.sandbox`` says (built at the first proposal)."""
    name: str = "command"
    stop: threading.Event | None = None
    """The daemon's stop event: setting it ends the command (and whatever it started) at once."""

    @classmethod
    def from_config(cls, settings: Settings, repo: Path, stop: threading.Event | None = None) -> CommandAgent:
        if not settings.command_agent.command.strip():
            raise AgentFatal(
                "command_agent.command is empty: set it in autoresearch.toml, e.g. "
                'command = "claude -p {prompt} --permission-mode acceptEdits"'
            )
        # The prompt's escalation and log length are shared with the Anthropic agent's settings.
        a = settings.anthropic
        jail = AgentJail.from_config(settings.command_agent)  # ConfigError without a working bwrap
        if jail.bwrap is None:
            log.warning("command_agent.unsandboxed", warning="command_agent.sandbox = \"none\": the CLI runs with "
                        "the daemon's rights and can change the repo, its .git and the runs; unsafe")
        return cls(settings.command_agent, repo, settings.budget, a.escalate_after, a.max_log_chars, jail, stop=stop)

    def propose(self, ctx: ProposalContext) -> Proposal:
        jail = self.jail or AgentJail.from_config(self.settings)
        with scratch_checkout(self.repo, ctx.best_commit, f"{ctx.n}") as (tree, work):
            context_file = work / "context.md"
            runs = None if ctx.runs_dir is None else jail.runs_path(ctx.runs_dir)
            context_file.write_text(self._context(ctx, runs), encoding="utf-8")
            (tree / NOTES_FILE).write_text(str(ctx.agent_state.get("notes") or ""), encoding="utf-8")
            before = manifest(tree)
            inside_context = jail.context_path(context_file)
            command = self._render(ctx.target, inside_context)
            log.info("command_agent.start", n=ctx.n, command=command, sandboxed=jail.bwrap is not None)
            started = time.monotonic()
            with (work / "output.log").open("wb") as out:
                code = jail.run(command, tree, context_file, self._env(ctx, inside_context), out, ctx.runs_dir,
                                stop=self.stop)
            output = (work / "output.log").read_text(encoding="utf-8", errors="replace")
            wall_s = round(time.monotonic() - started, 3)
            self._check_exit(code, output, command)
            meta: dict[str, object] = {"agent": self.name, "exit_code": code, "wall_s": wall_s}
            return self._collect(ctx, tree, before, output, meta)

    def _render(self, target: str, context_file: str) -> str:
        """The command with its placeholders filled in, shell-quoted (literal braces elsewhere are kept)."""
        values = {
            "target": target,
            "program": prompts.PROGRAM_FILE,
            "context": context_file,
            "description_file": self.settings.description_file,
            "notes_file": NOTES_FILE,
        }
        values["prompt"] = PROMPT.format(**values)
        command = self.settings.command
        for key, value in values.items():
            command = command.replace("{" + key + "}", shlex.quote(value))
        return command

    def _env(self, ctx: ProposalContext, context_file: str) -> dict[str, str]:
        # Extras for wrapper scripts; the sandbox adds the allow-listed part of the daemon's environment.
        return {
            "AUTORESEARCH_TARGET": ctx.target,
            "AUTORESEARCH_CONTEXT": context_file,
            "AUTORESEARCH_DESCRIPTION_FILE": self.settings.description_file,
            "AUTORESEARCH_NOTES_FILE": NOTES_FILE,
        }

    def _context(self, ctx: ProposalContext, runs_dir: str | None = None) -> str:
        how = prompts.HOW_COMMAND.format(
            target=ctx.target, description_file=self.settings.description_file, notes_file=NOTES_FILE
        )
        task = (
            f"Propose experiment #{ctx.n}: edit `{ctx.target}`, write the one-line description to "
            f"`{self.settings.description_file}` and update `{NOTES_FILE}`."
        )
        rules = prompts.contract(ctx.target, ctx.metric, ctx.direction, self.budget_s, how=how)
        sections = prompts.context_sections(
            ctx, escalate_after=self.escalate_after, max_log_chars=self.max_log_chars, task=task
        )
        readonly = ", ".join(f"`{r}`" for r in ctx.readonly) or "(none)"
        logs = "" if runs_dir is None else f"\nRun logs (read-only): `{runs_dir}/<n>/run.log`"
        return f"{rules}\nRead-only files: {readonly}{logs}\n\n{sections.markdown()}\n"

    def _check_exit(self, code: int | None, output: str, command: str) -> None:
        tail = prompts.cut_tail(output.strip(), TAIL_CHARS)
        if code is None:
            raise AgentError(f"the command agent timed out after {self.settings.timeout_s:g} s and was killed")
        if code == 127:
            raise AgentFatal(f"the command agent's program was not found (exit 127): {command}\n{tail}")
        if code != 0:
            raise AgentError(f"the command agent exited with status {code}:\n{tail}")

    def _collect(
        self, ctx: ProposalContext, tree: Path, before: dict[str, str | None], output: str, meta: dict[str, object]
    ) -> Proposal:
        """The target's new text, compared with the parent commit's; nothing else of the checkout is taken."""
        own = {ctx.target, self.settings.description_file, NOTES_FILE}
        dropped = [p for p in changed_paths(before, tree) if p not in own]
        if dropped:
            log.warning("command_agent.dropped_changes", n=ctx.n, paths=dropped, note=f"only {ctx.target} is taken")
        content = read_inside(tree, ctx.target)
        if content is None:
            raise ProposalRejected(f"the command agent deleted {ctx.target}")
        if content == ctx.best_content:
            raise ProposalRejected(f"the command agent did not change {ctx.target}")
        check_python(content, ctx.target)
        description = self._description(tree, output) or f"edit by the command agent (#{ctx.n})"
        notes = read_inside(tree, NOTES_FILE)
        state = None if notes is None else {"notes": prompts.clean_notes(notes)}
        meta = {**meta, "dropped": dropped}
        log.info("command_agent.proposal", n=ctx.n, description=description, dropped=len(dropped))
        return Proposal(content, description, meta=meta, agent_state=state)

    def _description(self, tree: Path, output: str) -> str:
        from_file = prompts.clean_description(read_inside(tree, self.settings.description_file) or "")
        if from_file:
            return from_file
        lines = [line for line in output.splitlines() if line.strip()]
        return prompts.clean_description(lines[-1]) if lines else ""


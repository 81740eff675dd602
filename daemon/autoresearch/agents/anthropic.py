"""AnthropicAgent (``--agent anthropic``): one short tool-use conversation with Claude per proposal.

The model sees program.md and the contract (system prompt), the read-only files, the whole history, the
current best target, the last crash's log and its own notes. It edits a draft of the target with tools and
calls ``finish``; bad proposals are fed back within the conversation up to ``max_fix_attempts`` times.
The stable prefix (tools, system prompt, read-only files, older history, best target) carries prompt-cache
breakpoints, and one more rolls along with the conversation, four in all (the API's limit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from anthropic.types import Message, ToolUseBlock

from autoresearch.agents import prompts
from autoresearch.agents.base import Proposal, ProposalContext, Usage
from autoresearch.agents.keys import redact, take_api_key
from autoresearch.agents.messages_api import MessagesAPI, build_client, resolve_base_url
from autoresearch.agents.pricing import find_price, usage_of
from autoresearch.agents.tools import EditSession, ToolResult, tool_specs
from autoresearch.errors import AgentError, AgentFatal, ProposalRejected
from autoresearch.ops.config import AnthropicSettings, PriceTable, Settings

log = structlog.get_logger("autoresearch.agents.anthropic")

EPHEMERAL = {"type": "ephemeral"}
LOG_CHARS = 4000
"""Characters of each prompt/reply shown in debug logs."""

NO_TOOL = (
    "You replied without calling a tool. Edit {target} with str_replace or write_file, then call finish. "
    "Do not ask for confirmation: nobody is watching."
)
CUT_OFF = "Your reply hit the max_tokens limit and was cut. Use smaller str_replace edits, then call finish."


class AnthropicAgent:
    """Proposes a new target through a tool-use conversation with the Messages API."""

    name = "anthropic"

    def __init__(
        self,
        settings: AnthropicSettings,
        api: MessagesAPI,
        repo: Path,
        *,
        price: PriceTable | None,
        budget_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.api = api
        self.repo = repo
        self.price = price
        self.budget_s = budget_s

    @classmethod
    def from_config(
        cls, settings: Settings, repo: Path, *, sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
    ) -> AnthropicAgent:
        """Build the agent; AgentFatal when there is no key, or no price while a cost limit is set. ``stop``:
        the daemon's stop event, which cancels a conversation in progress (``agents.cancel``)."""
        a = settings.anthropic
        key, token = take_api_key(a.api_key_file)
        price = find_price(a.model, a.prices)
        if price is None:
            if settings.limits.max_cost_usd is not None:
                raise AgentFatal(
                    f"no price for model {a.model!r}, so limits.max_cost_usd cannot be enforced: "
                    f"add [anthropic.prices.{a.model}] (USD per million tokens) to autoresearch.toml"
                )
            log.warning("anthropic.no_price", model=a.model, note="costs are recorded as 0")
        api = MessagesAPI(build_client(a, key, token), a, secrets=tuple(s for s in (key, token) if s), sleep=sleep,
                          stop=stop)
        log.info("anthropic.ready", model=a.model, base_url=resolve_base_url(a) or "default")
        return cls(a, api, repo, price=price, budget_s=settings.budget)

    def close(self) -> None:
        """Close the HTTP client (the loop may call this at shutdown; process exit does it too)."""
        self.api.client.close()

    def propose(self, ctx: ProposalContext) -> Proposal:
        usage = Usage()
        try:
            return self._converse(ctx, usage)
        except AgentError as exc:
            exc.usage = usage.as_dict()  # what the failed attempt cost still goes into the ledger
            raise

    def _converse(self, ctx: ProposalContext, usage: Usage) -> Proposal:
        s = self.settings
        session = EditSession(
            self.repo, ctx.target, ctx.best_content, s.max_file_chars, runs_dir=ctx.runs_dir, log_chars=s.max_log_chars
        )
        system = self._system(ctx)
        tools = tool_specs(ctx.target)
        messages: list[dict[str, Any]] = [{"role": "user", "content": self._context(ctx)}]
        self._log_prompt(ctx.n, 0, system, messages)
        strikes, last_error = 0, ""
        for turn in range(1, s.max_turns + 1):
            reply = self.api.create(system=system, tools=tools, messages=with_rolling_cache(messages))
            usage.add(usage_of(reply.usage, self.price))
            self._log_reply(ctx.n, turn, reply)
            messages.append({"role": "assistant", "content": assistant_content(reply)})
            calls = [b for b in reply.content if isinstance(b, ToolUseBlock)]
            feedback: list[dict[str, Any]] = []
            if not calls:
                strikes, last_error = strikes + 1, "replied without a tool call"
                text = CUT_OFF if reply.stop_reason == "max_tokens" else NO_TOOL.format(target=ctx.target)
                feedback.append({"type": "text", "text": text})
            for call in calls:
                result = session.handle(call.name, call.input)
                if result.done:
                    return self._proposal(ctx, session, usage, turn, strikes)
                feedback.append(tool_result(call.id, result))
                if result.strike:
                    strikes, last_error = strikes + 1, result.text
            if strikes > s.max_fix_attempts:
                raise ProposalRejected(f"gave up after {strikes} bad proposal(s); the last: {last_error}")
            messages.append({"role": "user", "content": feedback})
            self._log_prompt(ctx.n, turn, None, messages)
        raise ProposalRejected(f"no proposal finished within {s.max_turns} turns")

    def _system(self, ctx: ProposalContext) -> list[dict[str, Any]]:
        """program.md, the contract and the read-only files: the same every iteration, so cached."""
        texts = [
            prompts.load_program(self.repo),
            prompts.contract(ctx.target, ctx.metric, ctx.direction, self.budget_s),
            prompts.readonly_section(self.repo, ctx.readonly, self.settings.max_file_chars),
        ]
        blocks: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts if t]
        blocks[-1]["cache_control"] = EPHEMERAL
        return blocks

    def _context(self, ctx: ProposalContext) -> list[dict[str, Any]]:
        sections = prompts.context_sections(
            ctx, escalate_after=self.settings.escalate_after, max_log_chars=self.settings.max_log_chars
        )
        blocks: list[dict[str, Any]] = []
        if sections.older_history:
            blocks.append({"type": "text", "text": sections.older_history, "cache_control": EPHEMERAL})
        blocks.append({"type": "text", "text": sections.best_target, "cache_control": EPHEMERAL})
        blocks.append({"type": "text", "text": sections.recent})
        return blocks

    def _proposal(self, ctx: ProposalContext, session: EditSession, usage: Usage, turns: int, strikes: int) -> Proposal:
        state = None if session.notes is None else {"notes": session.notes}
        meta = {"agent": self.name, "model": self.settings.model, "turns": turns, "fix_attempts": strikes}
        log.info(
            "anthropic.proposal", n=ctx.n, turns=turns, fix_attempts=strikes,
            cost_usd=round(usage.cost_usd, 6), description=session.description,
        )  # fmt: skip
        return Proposal(session.draft, session.description, usage=usage, meta=meta, agent_state=state)

    def _log_prompt(self, n: int, turn: int, system: list[dict[str, Any]] | None, messages: list[Any]) -> None:
        secrets = self.api.secrets
        if system is not None:
            text = "\n\n".join(str(b["text"]) for b in system)
            log.debug("anthropic.system_prompt", n=n, text=redact(prompts.cut_head(text, LOG_CHARS), secrets))
        shown = redact(prompts.cut_head(repr(messages[-1]["content"]), LOG_CHARS), secrets)
        log.debug("anthropic.prompt", n=n, turn=turn, content=shown)

    def _log_reply(self, n: int, turn: int, reply: Message) -> None:
        shown = redact(prompts.cut_head(repr([b.to_dict() for b in reply.content]), LOG_CHARS), self.api.secrets)
        log.debug("anthropic.reply", n=n, turn=turn, stop_reason=reply.stop_reason, content=shown)


def assistant_content(reply: Message) -> list[dict[str, Any]]:
    """The reply as it must be sent back (thinking blocks and their signatures included), minus empty text
    blocks, which the API would reject."""
    blocks = [b.to_dict(mode="json") for b in reply.content]
    blocks = [b for b in blocks if not (b.get("type") == "text" and not b.get("text"))]
    return blocks or [{"type": "text", "text": "(empty reply)"}]


def tool_result(tool_use_id: str, result: ToolResult) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id, "content": result.text}
    if result.is_error:
        block["is_error"] = True
    return block


def with_rolling_cache(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages with a cache breakpoint on the last block, so each turn reads the previous turns from cache.

    Only the copy sent carries it: earlier turns' breakpoints would exceed the API's four.
    """
    last = messages[-1]
    content = [dict(b) for b in last["content"]]
    content[-1]["cache_control"] = EPHEMERAL
    return [*messages[:-1], {**last, "content": content}]

"""The Agent interface: given the research so far, propose a new version of the target file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from autoresearch.errors import ProposalRejected


@dataclass
class Usage:
    """What one proposal cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cost_usd += other.cost_usd

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class HistoryEntry:
    n: int
    commit: str
    status: str
    """keep, discard or crash."""
    metric: float | None
    description: str
    cause: str
    """How the run ended: ok, or why it crashed (exit:1, oom, timeout, ...)."""
    meta: dict[str, Any]
    """What the agent attached to its proposal (e.g. the offline agent's parameters)."""
    memory_gb: float | None = None
    """Peak memory of the run (GPU, else the sandbox's), as in results.tsv; None when unknown."""


@dataclass(frozen=True)
class ProposalContext:
    n: int
    repo: Path
    target: str
    readonly: tuple[str, ...]
    metric: str
    direction: str
    best_commit: str
    best_content: str
    best_metric: float | None
    history: tuple[HistoryEntry, ...]
    last_crash_log: str | None
    """The last run's log tail when it crashed and the agent may still try to fix it."""
    crash_streak: int
    stale_streak: int
    """Non-improving runs in a row (discards and crashes)."""
    agent_state: dict[str, Any] = field(default_factory=dict)
    """The agent's persistent memory (e.g. notes), as last returned, restored from the journal."""
    runs_dir: Path | None = None
    """The folder of the runs' logs (``<runs_dir>/<n>/run.log``), read-only to agents; None when unknown."""
    recent_errors: tuple[str, ...] = ()
    """Why the last proposals failed, once ``proposals.max_failed_in_a_row`` failed in a row (else empty)."""


@dataclass
class Proposal:
    content: str
    """The complete new text of the target file."""
    description: str
    usage: Usage = field(default_factory=Usage)
    meta: dict[str, Any] = field(default_factory=dict)
    agent_state: dict[str, Any] | None = None
    """Updated persistent memory to journal, or None to leave it as is."""


class Agent(Protocol):
    name: str

    def propose(self, ctx: ProposalContext) -> Proposal:
        """Return a new target; raise AgentError (or a subclass) when none can be made."""


def check_python(content: str, filename: str) -> None:
    """Reject a Python target that does not compile, before any GPU time is spent."""
    if not filename.endswith(".py"):
        return
    try:
        compile(content, filename, "exec")
    except SyntaxError as exc:
        raise ProposalRejected(f"{filename} does not compile: {exc.msg} (line {exc.lineno})") from exc


@dataclass
class FakeAgent:
    """Scripted proposals for tests: each entry is (content, description) or an exception to raise."""

    script: list[Any] = field(default_factory=list)
    name: str = "fake"
    contexts: list[ProposalContext] = field(default_factory=list)

    def propose(self, ctx: ProposalContext) -> Proposal:
        self.contexts.append(ctx)
        if not self.script:
            return Proposal(content=ctx.best_content + f"\n# variant {ctx.n}\n", description=f"variant {ctx.n}")
        entry = self.script.pop(0)
        if isinstance(entry, BaseException):
            raise entry
        if callable(entry):
            result: Proposal = entry(ctx)
            return result
        content, description = entry
        return Proposal(content=content, description=description)

"""What the research agents are told: the system prompt (program.md and the contract) and the context of
one iteration (best target, history table, notes, crash log, escalation).

The sections come in cache-friendly order: what changes least comes first, so a prompt cache can hold
the system prompt, the read-only files and the older history across iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.agents.base import HistoryEntry, ProposalContext
from autoresearch.ops.safetext import one_line

PROGRAM_FILE = "program.md"
HISTORY_CHUNK = 20
"""Older history is cut at multiples of this many rows, so it stays byte-identical (cacheable) for a while."""
MAX_NOTES_CHARS = 20000

DEFAULT_PROGRAM = (
    "# Research program\n\nImprove the metric by changing the training script: architecture, optimizer, "
    "schedule, hyperparameters. Each experiment trains for a fixed wall-clock budget."
)

CONTRACT = """\
# How this works
You are an autonomous ML researcher running unattended, in a loop. Each time you are called you propose \
ONE new version of `{target}`. The daemon commits it, trains for a fixed wall-clock budget{budget}, and keeps \
it only if `{metric}` gets {better}; otherwise it is discarded and the best version stays.

Rules:
{how}
- One idea per experiment, so that the result says something.
- Simplicity criterion: all else equal, simpler is better. A tiny gain that adds ugly complexity is not \
worth it; removing code for an equal or better result is a win.
- The run must finish within the budget and must not crash: a crash wastes a run.
- The daemon does program.md's setup and bookkeeping itself (the branch, the git commit of each \
experiment, running it with output to `run.log`, the results.tsv row): skip those steps and only propose.
- Never ask whether to continue or stop, and never ask for confirmation: nobody is watching. Always \
propose an experiment.
- When ideas run dry or results stall, think harder: re-read the code, study the history, reconsider your \
assumptions.
"""

HOW_TOOLS = """\
- Edit only `{target}`: `str_replace` for exact, small edits (preferred), `write_file` for the whole file. \
Every other file is read-only; `read_file` reads any file in the repo.
- Then call `finish` with a one-line description of the change (it becomes the results.tsv row) and your \
updated `notes`: the scratchpad you keep across iterations (ideas tried, what worked, insights, next ideas)."""

HOW_COMMAND = """\
- Edit only `{target}`, in the current directory (a scratch checkout of the best commit). Changes to any \
other file are dropped.
- Write a one-line description of the change to `{description_file}` (it becomes the results.tsv row), and \
keep your scratchpad in `{notes_file}`: ideas tried, what worked, insights, next ideas. It is kept across \
iterations."""

ESCALATION = """\
# You are stuck: {stale} runs in a row without improvement
Change strategy:
- Re-read the code (`{target}` and the read-only files) with read_file instead of relying on memory.
- Combine near-misses: ideas in the history that came close to the best.
- Try something radical: a different architecture, optimizer or schedule, not another small tweak.
- Reverse an assumption you have been making all along.
Think harder than before, then make one bold, well-reasoned change.
"""


@dataclass(frozen=True)
class ContextSections:
    """One iteration's context, as text sections in cache-friendly order."""

    older_history: str
    """Rows before the last chunk boundary: stable for up to HISTORY_CHUNK iterations ('' when none)."""
    best_target: str
    """The current best target: stable until the next keep."""
    recent: str
    """Recent history rows, notes, crash log, escalation and the task: new every iteration."""

    def markdown(self) -> str:
        return "\n\n".join(s for s in (self.older_history, self.best_target, self.recent) if s)


def load_program(repo: Path) -> str:
    path = repo / PROGRAM_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or DEFAULT_PROGRAM
    except (OSError, UnicodeDecodeError):
        return DEFAULT_PROGRAM


def contract(target: str, metric: str, direction: str, budget_s: float | None, how: str | None = None) -> str:
    """The rules; ``how`` (formatted) says how to edit and submit: by default with the tools."""
    better = "lower" if direction == "min" else "higher"
    budget = f" ({budget_s:g} s)" if budget_s else ""
    how = how or HOW_TOOLS.format(target=target)
    return CONTRACT.format(target=target, metric=metric, better=better, budget=budget, how=how)


def cut_head(text: str, limit: int) -> str:
    """The start of ``text``, with a notice when cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... cut: showing the first {limit} of {len(text)} characters]"


def cut_tail(text: str, limit: int) -> str:
    """The end of ``text`` (where a traceback is), with a notice when cut."""
    if len(text) <= limit:
        return text
    return f"[... cut: showing the last {limit} of {len(text)} characters]\n" + text[-limit:]


def fenced(text: str, lang: str = "") -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def readonly_section(repo: Path, readonly: Sequence[str], limit: int) -> str:
    """The read-only files' contents: stable across iterations, so part of the cached prefix."""
    parts = []
    for rel in readonly:
        try:
            text = (repo / rel).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            text = f"(unreadable: {exc.strerror})"
        lang = "python" if rel.endswith(".py") else ""
        parts.append(f"## {rel}\n{fenced(cut_head(text, limit), lang)}")
    if not parts:
        return ""
    return "# Read-only files (context; never edit them)\n\n" + "\n\n".join(parts)


def _same_commit(a: str, b: str) -> bool:
    return bool(a and b) and (a.startswith(b) or b.startswith(a))


def history_rows(history: Sequence[HistoryEntry], best_commit: str) -> list[str]:
    rows = []
    for e in history:
        best = "*" if e.status == "keep" and _same_commit(e.commit, best_commit) else " "
        metric = "-" if e.metric is None else f"{e.metric:.6f}"
        memory = "-" if e.memory_gb is None else f"{e.memory_gb:.1f}"
        cause = e.cause if e.cause not in ("", "ok") else "no metric" if e.status == "crash" else "-"
        desc = " ".join(e.description.split())[:140]
        rows.append(f"{best}{e.n:>4}  {e.commit[:7]:<7}  {metric:>10}  {memory:>9}  {e.status:<7}  {cause:<12}  {desc}")
    return rows


def _table_header(metric: str) -> str:
    return f"{'':1}{'n':>4}  {'commit':<7}  {metric:>10}  {'memory_gb':>9}  {'status':<7}  {'cause':<12}  description"


def context_sections(
    ctx: ProposalContext, *, escalate_after: int, max_log_chars: int, task: str | None = None
) -> ContextSections:
    """``task`` replaces the closing instruction (the command agent has no finish tool)."""
    rows = history_rows(ctx.history, ctx.best_commit)
    split = ((len(rows) - 1) // HISTORY_CHUNK) * HISTORY_CHUNK if rows else 0
    older = ""
    if split:
        older = f"# Experiment history (rows 1-{split}; * = current best)\n{_table_header(ctx.metric)}\n"
        older += "\n".join(rows[:split])
    best_metric = "-" if ctx.best_metric is None else f"{ctx.best_metric:.6f}"
    title = f"# Current best `{ctx.target}` (commit {ctx.best_commit[:7]}, {ctx.metric} = {best_metric})"
    best = title + "\n" + fenced(ctx.best_content, "python" if ctx.target.endswith(".py") else "")
    task = task or (
        f"Propose experiment #{ctx.n}: edit `{ctx.target}`, then call finish with a one-line "
        "description and your updated notes."
    )
    return ContextSections(older, best, _recent(ctx, rows[split:], split, escalate_after, max_log_chars, task))


def _recent(
    ctx: ProposalContext, rows: list[str], start: int, escalate_after: int, max_log_chars: int, task: str
) -> str:
    goal = "lower" if ctx.direction == "min" else "higher"
    parts = []
    if rows:
        title = "Experiment history" if not start else f"Experiment history, continued (rows {start + 1}-)"
        parts.append(f"# {title} (* = current best; {ctx.metric}: {goal} is better)\n{_table_header(ctx.metric)}\n")
        parts[-1] += "\n".join(rows)
    else:
        parts.append("# Experiment history\n(none yet)")
    if ctx.in_flight:
        parts.append(in_flight_section(ctx))
    notes = str(ctx.agent_state.get("notes") or "").strip()
    parts.append(
        "# Your notes (your scratchpad from earlier iterations)\n" + (notes or "(empty: start them in finish)")
    )
    if ctx.last_crash_log is not None:
        parts.append(
            f"# The last run crashed ({ctx.crash_streak} crash(es) in a row). Its log tail:\n"
            + fenced(cut_tail(ctx.last_crash_log, max_log_chars))
            + "\nFix the crash if the idea is worth keeping, or move on to another idea."
        )
    if ctx.recent_errors:
        errors = "\n".join(f"- {cut_tail(e.strip(), 1000)}" for e in ctx.recent_errors)
        parts.append(f"# Your recent proposals failed before any run; the last {len(ctx.recent_errors)} errors:\n"
                     f"{errors}\nFix what these errors point at before anything else.")
    if ctx.stale_streak >= escalate_after:
        parts.append(ESCALATION.format(stale=ctx.stale_streak, target=ctx.target))
    parts.append(f"# Task\n{task}")
    return "\n\n".join(parts)


def in_flight_section(ctx: ProposalContext) -> str:
    """Experiments running or queued right now: their results are not in yet, so do not propose them again."""
    rows = []
    for f in ctx.in_flight:
        where = f"lane {f.lane}" if f.lane is not None else "queued"
        n = "-" if f.n is None else str(f.n)
        rows.append(f"{n:>4}  {where:<8}  {f.parent[:7]:<7}  {' '.join(f.description.split())[:140]}")
    header = f"{'n':>4}  {'where':<8}  {'parent':<7}  description"
    return ("# In flight (running or queued; results not in yet: propose something different)\n"
            + header + "\n" + "\n".join(rows))


def clean_description(text: str, limit: int = 200) -> str:
    """The first non-empty line, whitespace and control characters collapsed, capped: it becomes a TSV cell."""
    for line in text.splitlines():
        line = one_line(line)
        if line:
            return line[:limit]
    return ""


def clean_notes(text: str) -> str:
    """Notes are capped so the scratchpad cannot grow without bound across iterations."""
    return text.strip()[:MAX_NOTES_CHARS]

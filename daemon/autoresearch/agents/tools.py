"""The tools of the proposal conversation and the edit session that carries them out.

The session holds a draft of the target (the best version plus the edits so far); nothing is written to
disk. A call that makes a bad proposal (an edit that does not apply, an edit to another file, malformed
input, finishing with no edit or with code that does not compile) is a *strike*: it is fed back to the
model, and the agent gives up on the iteration after too many. ``read_run_log`` shows any past run's
log (the daemon's copy under .git, which ``read_file`` cannot reach), a window at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.agents.base import check_python
from autoresearch.agents.prompts import clean_description, clean_notes
from autoresearch.errors import ProposalRejected
from autoresearch.runners.hashing import MAX_HASH_BYTES, open_regular

MAX_LISTING = 200


def tool_specs(target: str) -> list[dict[str, Any]]:
    """The Messages API tool definitions (stable across iterations, so part of the cached prefix)."""
    path_prop = {"type": "string", "description": f"Must be {target!r}: the only editable file."}
    return [
        {
            "name": "read_file",
            "description": (
                "Read a file (or list a directory) of the research repo, read-only. Reading "
                f"{target} returns your current draft, edits included. Long files are cut: pass offset to go on."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "Path relative to the repo root."},
                    "offset": {"type": "integer", "description": "Character offset to start at (default 0)."},
                },
                "required": ["path"],
            },
        },
        {
            "name": "read_run_log",
            "description": (
                "Read the log (stdout and stderr) of any past experiment's run, read-only: n is its number in the "
                "history table. Without offset you get the end of the log (where the summary or the traceback "
                "is); pass offset (a byte offset) to read from there instead."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "description": "The experiment number (the history table's n)."},
                    "offset": {"type": "integer", "description": "Byte offset to start at (default: the tail)."},
                },
                "required": ["n"],
            },
        },
        {
            "name": "str_replace",
            "description": (
                f"Replace one exact occurrence of old_str by new_str in {target}. old_str must match the "
                "current draft exactly (whitespace included) and occur exactly once."
            ),
            "input_schema": {
                "type": "object",
                "properties": {"path": path_prop, "old_str": {"type": "string"}, "new_str": {"type": "string"}},
                "required": ["path", "old_str", "new_str"],
            },
        },
        {
            "name": "write_file",
            "description": f"Replace the whole of {target} with content (for large rewrites).",
            "input_schema": {
                "type": "object",
                "properties": {"path": path_prop, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
        {
            "name": "finish",
            "description": (
                f"Submit the edited {target} as the next experiment. description: one line saying what "
                "changed and why. notes: your full updated scratchpad; it replaces the old one."
            ),
            "input_schema": {
                "type": "object",
                "properties": {"description": {"type": "string"}, "notes": {"type": "string"}},
                "required": ["description"],
            },
        },
    ]


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False
    strike: bool = False
    """A bad proposal, counted against max_fix_attempts."""
    done: bool = False
    """finish accepted the draft."""


class _Malformed(Exception):
    pass


def _string(args: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise _Malformed(f"input {key!r} is {kind}")
    return value


class EditSession:
    """One conversation's draft of the target, and the tool calls on it."""

    def __init__(
        self,
        repo: Path,
        target: str,
        original: str,
        max_chars: int,
        runs_dir: Path | None = None,
        log_chars: int = 8000,
    ) -> None:
        self.root = repo.resolve()
        self.runs_dir = runs_dir
        self.log_chars = log_chars
        self.target = target
        self.original = original
        self.draft = original
        self.max_chars = max_chars
        self.edits = 0
        self.description = ""
        self.notes: str | None = None

    def handle(self, name: str, args: object) -> ToolResult:
        handlers = {
            "read_file": self._read_file,
            "read_run_log": self._read_run_log,
            "str_replace": self._str_replace,
            "write_file": self._write_file,
            "finish": self._finish,
        }
        handler = handlers.get(name)
        if handler is None:
            return ToolResult(f"unknown tool {name!r}; use one of {', '.join(handlers)}", True, strike=True)
        if not isinstance(args, dict):
            return ToolResult(f"{name}: input must be an object", True, strike=True)
        try:
            return handler(args)
        except _Malformed as exc:
            return ToolResult(f"{name}: malformed input: {exc}. Nothing was changed.", True, strike=True)

    def _resolve(self, rel: str) -> Path | None:
        """The file ``rel`` names inside the repo, or None when it is outside or in .git."""
        path = (self.root / rel).resolve()
        if path != self.root and self.root not in path.parents:
            return None
        inside = path.relative_to(self.root).parts
        return None if inside and inside[0] == ".git" else path

    def _is_target(self, rel: str) -> bool:
        return self._resolve(rel) == (self.root / self.target).resolve()

    def _read_file(self, args: dict[str, Any]) -> ToolResult:
        rel = _string(args, "path") or "."
        offset = args.get("offset", 0) or 0
        if not isinstance(offset, int) or offset < 0:
            raise _Malformed("'offset' must be a non-negative integer")
        path = self._resolve(rel)
        if path is None:
            return ToolResult(f"{rel}: outside the repo or inside .git; not readable", True)
        if self._is_target(rel):
            return ToolResult(self._window(self.draft, offset))
        if path.is_dir():
            return ToolResult(self._listing(path))
        try:
            with open_regular(path) as (fh, st):  # a FIFO or a device in the repo must not hang the daemon
                if st.st_size > MAX_HASH_BYTES:
                    return ToolResult(f"{rel}: {st.st_size} bytes, too big to read", True)
                data = fh.read(MAX_HASH_BYTES)
        except OSError as exc:
            return ToolResult(f"{rel}: {exc.strerror or exc}", True)
        if b"\0" in data[:8192]:
            return ToolResult(f"{rel}: binary file, {len(data)} bytes")
        return ToolResult(self._window(data.decode("utf-8", errors="replace"), offset))

    def _read_run_log(self, args: dict[str, Any]) -> ToolResult:
        n, offset = args.get("n"), args.get("offset")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise _Malformed("'n' must be an experiment number (a non-negative integer)")
        if offset is not None and (not isinstance(offset, int) or isinstance(offset, bool) or offset < 0):
            raise _Malformed("'offset' must be a non-negative integer")
        if self.runs_dir is None:
            return ToolResult("run logs are not available in this session", True)
        try:
            data, start, size = read_log_window(self.runs_dir / str(n) / "run.log", offset, self.log_chars)
        except FileNotFoundError:
            return ToolResult(f"experiment {n} has no run log (not run yet, or no such experiment)", True)
        except OSError as exc:
            return ToolResult(f"the log of experiment {n} is not readable: {exc.strerror or exc}", True)
        end = start + len(data)
        text = data.decode("utf-8", errors="replace") or "(empty log)"
        if start == 0 and end == size:
            return ToolResult(text)
        before = f"; earlier: offset={max(0, start - self.log_chars)}" if start > 0 else ""
        after = f"; more: offset={end}" if end < size else ""
        return ToolResult(f"{text}\n[run {n}'s log: bytes {start}-{end} of {size}{before}{after}]")

    def _window(self, text: str, offset: int) -> str:
        end = offset + self.max_chars
        if offset == 0 and len(text) <= end:
            return text
        notice = f"[cut: characters {offset}-{min(end, len(text))} of {len(text)}"
        more = f"; call read_file with offset={end} for more]" if end < len(text) else "]"
        return text[offset:end] + "\n" + notice + more

    def _listing(self, path: Path) -> str:
        entries = sorted(p for p in path.iterdir() if p.name != ".git")
        names = [p.name + ("/" if p.is_dir() else "") for p in entries[:MAX_LISTING]]
        extra = f"\n[... {len(entries) - MAX_LISTING} more]" if len(entries) > MAX_LISTING else ""
        return "\n".join(names) + extra

    def _check_target(self, args: dict[str, Any]) -> ToolResult | None:
        rel = _string(args, "path")
        assert rel is not None
        if self._is_target(rel):
            return None
        return ToolResult(
            f"{rel} is read-only: only {self.target} may be edited. The edit was not applied.", True, strike=True
        )

    def _str_replace(self, args: dict[str, Any]) -> ToolResult:
        refused = self._check_target(args)
        old, new = _string(args, "old_str"), _string(args, "new_str")
        if refused is not None:
            return refused
        assert old is not None and new is not None
        count = self.draft.count(old) if old else 0
        if count != 1:
            why = "is empty" if not old else "was not found" if count == 0 else f"occurs {count} times"
            hint = "read_file it and copy the text exactly" if count == 0 else "include more context to make it unique"
            return ToolResult(f"str_replace failed: old_str {why} in {self.target}; {hint}.", True, strike=True)
        line = self.draft[: self.draft.index(old)].count("\n") + 1
        self.draft = self.draft.replace(old, new, 1)
        self.edits += 1
        return ToolResult(f"Edited {self.target} at line {line}.{self._compile_note()}")

    def _write_file(self, args: dict[str, Any]) -> ToolResult:
        refused = self._check_target(args)
        content = _string(args, "content")
        if refused is not None:
            return refused
        assert content is not None
        self.draft = content
        self.edits += 1
        return ToolResult(f"Wrote {self.target} ({len(content)} characters).{self._compile_note()}")

    def _compile_note(self) -> str:
        """Early warning only: the draft may be mid-way through a multi-step edit."""
        try:
            check_python(self.draft, self.target)
        except ProposalRejected as exc:
            return f" Note: {exc}; fix it before finish."
        return ""

    def _finish(self, args: dict[str, Any]) -> ToolResult:
        description = clean_description(_string(args, "description") or "")
        notes = _string(args, "notes", required=False)
        if not description:
            raise _Malformed("'description' is empty")
        if self.draft == self.original:
            return ToolResult(f"No edit: {self.target} is unchanged. Edit it, then call finish.", True, strike=True)
        try:
            check_python(self.draft, self.target)
        except ProposalRejected as exc:
            return ToolResult(f"Not submitted: {exc}. Fix it, then call finish again.", True, strike=True)
        self.description = description
        self.notes = None if notes is None else clean_notes(notes)
        return ToolResult("Submitted.", done=True)


def read_log_window(path: Path, offset: int | None, limit: int) -> tuple[bytes, int, int]:
    """Up to ``limit`` bytes of a run log from ``offset`` (None: its tail), without reading the whole file
    (a log may be tens of MB) and without following a symlink (a run could plant one in place of its log)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        start = max(0, size - limit) if offset is None else min(offset, size)
        fh.seek(start)
        return fh.read(limit), start, size

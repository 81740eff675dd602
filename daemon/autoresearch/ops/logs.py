"""structlog setup: JSON lines on stdout when not a terminal (journald, docker logs), a readable
console otherwise. Under systemd (JOURNAL_STREAM set) each JSON line starts with the syslog
priority prefix ``<N>``, which journald strips and uses as the entry's priority."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

from autoresearch.ops.safetext import printable

_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2, "exception": 3}


class _PrefixedJSON:
    """Render JSON, prefixed with ``<priority>`` for journald."""

    def __init__(self, prefix: bool) -> None:
        self._json = structlog.processors.JSONRenderer(sort_keys=False)
        self._prefix = prefix

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> str:
        level = str(event_dict.get("level", method))
        line = str(self._json(logger, method, event_dict))
        return f"<{_PRIORITY.get(level, 6)}>{line}" if self._prefix else line


def _printable_values(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Agent-written text (descriptions, file names, error messages) without control or format characters."""
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return printable(value, keep_newlines=True)
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return {key: clean(value) for key, value in event_dict.items()}


def configure(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog once for the process (called by the CLI, never at import)."""
    out = stream or sys.stdout
    as_json = (not out.isatty()) if json is None else json
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if as_json else structlog.dev.set_exc_info,
    ]
    if as_json:
        processors.append(_PrefixedJSON(prefix=bool(os.environ.get("JOURNAL_STREAM"))))
    else:  # JSON escapes control characters itself; a terminal would obey them
        processors += [_printable_values, structlog.dev.ConsoleRenderer(colors=out.isatty())]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )

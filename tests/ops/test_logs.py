from __future__ import annotations

import io
import json

import pytest
import structlog

from autoresearch.ops import logs


@pytest.fixture(autouse=True)
def _reset_structlog():  # type: ignore[no-untyped-def]
    yield
    structlog.reset_defaults()


def test_json_lines_with_journald_priorities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    out = io.StringIO()
    logs.configure(stream=out)
    log = structlog.get_logger("t")
    log.info("experiment.finished", n=3, status="keep")
    log.error("fatal", error="boom")
    first, second = out.getvalue().splitlines()
    assert first.startswith("<6>{") and second.startswith("<3>{")
    assert json.loads(first[3:])["event"] == "experiment.finished"
    assert json.loads(second[3:])["level"] == "error"


def test_plain_json_without_journald_and_level_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    out = io.StringIO()
    logs.configure(level="warning", stream=out)
    structlog.get_logger("t").info("hidden")
    structlog.get_logger("t").warning("shown", x=1)
    (line,) = out.getvalue().splitlines()
    assert json.loads(line) | {"timestamp": None} == {"event": "shown", "x": 1, "level": "warning", "timestamp": None}

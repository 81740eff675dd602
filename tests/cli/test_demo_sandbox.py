"""The demo's fallback when bubblewrap is missing: unsandboxed, said aloud, and only for the demo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoresearch.cli.commands import SANDBOX_ENV, demo_sandbox


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SANDBOX_ENV, raising=False)
    monkeypatch.delenv("AUTORESEARCH_RUNNER", raising=False)


def test_without_bwrap_the_demo_runs_unsandboxed_and_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    said: list[str] = []
    demo_sandbox(None, said.append)
    assert os.environ[SANDBOX_ENV] == "none"
    assert len(said) == 1 and "bubblewrap (bwrap) is not installed" in said[0] and "unsandboxed" in said[0]


def test_with_bwrap_nothing_changes() -> None:
    said: list[str] = []
    demo_sandbox(None, said.append)
    assert SANDBOX_ENV not in os.environ and said == []


@pytest.mark.parametrize("runner", ["docker", None])
def test_docker_or_an_explicit_choice_is_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     runner: str | None) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    if runner is None:
        monkeypatch.setenv(SANDBOX_ENV, "bwrap")  # the user's own choice wins: run refuses clearly
    demo_sandbox(runner, lambda _line: None)
    assert os.environ.get(SANDBOX_ENV) == (None if runner else "bwrap")

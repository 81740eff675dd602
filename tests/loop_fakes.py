"""Builders for loops wired to the package's fakes (no git, no processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoresearch.agents.base import FakeAgent
from autoresearch.config import Settings
from autoresearch.loop import Loop
from autoresearch.runners.base import FakeRunner
from autoresearch.session import Session
from autoresearch.workspace import FakeWorkspace

TARGET = "LR = 0.5\nWIDTH = 8\n"


def fake_loop(tmp_path: Path, runs: list[Any], proposals: list[Any] | None = None, **settings: Any) -> Loop:
    ws = FakeWorkspace(root=tmp_path, files={"train.py": TARGET, "prepare.py": "X = 1\n"})
    ws.create_branch("autoresearch/t")
    session = Session(repo=tmp_path, state_dir=tmp_path / ".git" / "autoresearch", tag="t")
    # No baseline repeats unless a test asks: the seed's one-row-per-proposal sequence.
    config = {"target": "train.py", "readonly": ["prepare.py"], "budget": 1.0, "noise": {"repeats": 0}, **settings}
    return Loop(
        settings=Settings(**config),
        session=session,
        workspace=ws,
        runner=FakeRunner(script=list(runs)),
        agent=FakeAgent(script=list(proposals or [])),
        idle_wait_s=lambda _k: 0.0,
    )


def ok(value: float) -> tuple[str, str]:
    return f"training...\nval_bpb: {value}\n", "ok"

"""Builders for loops wired to the package's fakes (no git, no processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoresearch.agents.base import FakeAgent
from autoresearch.coordinator.loop import Loop
from autoresearch.git.workspace import FakeWorkspace
from autoresearch.ops.config import Settings
from autoresearch.runners.base import CappedLog, FakeRunner, OnStarted, RunOutcome, RunSpec
from autoresearch.runners.lanes import Lane
from autoresearch.sessions.session import Session

TARGET = "LR = 0.5\nWIDTH = 8\n"


def fake_loop(tmp_path: Path, runs: list[Any], proposals: list[Any] | None = None, **settings: Any) -> Loop:
    ws = FakeWorkspace(root=tmp_path, files={"train.py": TARGET, "prepare.py": "X = 1\n"})
    ws.create_branch("autoresearch/t")
    session = Session(repo=tmp_path, state_dir=tmp_path / ".git" / "autoresearch", tag="t")
    # No drafting ahead and no baseline repeats unless a test asks: each proposal sees every result
    # before it, one row per proposal (the seed's serial sequence).
    proposals_cfg = {"ahead": 0, **settings.pop("proposals", {})}
    config = {"target": "train.py", "readonly": ["prepare.py"], "budget": 1.0, "proposals": proposals_cfg,
              "noise": {"repeats": 0}, **settings}
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


@dataclass
class GatedRunner:
    """A lane's fake runner: each run reports started, then waits for its gate (the test decides the order
    in which runs end); its metric comes from ``score`` of the committed target."""

    score: Callable[[str], float]
    gates: dict[int, threading.Event]
    started: list[tuple[int, str]] = field(default_factory=list)
    reaped: list[dict[str, Any]] = field(default_factory=list)
    name: str = "gated"

    def check(self) -> None:
        return None

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        assert spec.snapshot is not None
        content = (spec.snapshot / spec.target).read_text()
        on_started({"kind": "fake", "n": spec.n})
        self.started.append((spec.n, content))
        gate = self.gates.setdefault(spec.n, threading.Event())
        while not gate.wait(0.05):
            if spec.cancel.is_set():
                return RunOutcome(cause="interrupted")
        with CappedLog(spec.log_path, spec.log_cap_bytes) as log:
            log.write(f"val_bpb: {self.score(content)}\n".encode())
        return RunOutcome(cause="ok", exit_code=0)

    def reap(self, handle: dict[str, Any]) -> bool:
        self.reaped.append(handle)
        return False

    def reattach(
        self, handle: dict[str, Any], spec: RunSpec, on_started: OnStarted | None = None,
    ) -> RunOutcome | None:
        return None  # a local run: reaped and recorded interrupted

    def reap_orphans(self) -> int:
        return 0


def lanes_loop(tmp_path: Path, score: Callable[[str], float], script: list[Any], lanes: int = 2,
               ws: FakeWorkspace | None = None, **settings: Any) -> tuple[Loop, dict[int, threading.Event]]:
    """A loop with ``lanes`` lanes, each with its own gated runner; returns it and the gates by n."""
    if ws is None:
        ws = FakeWorkspace(root=tmp_path, files={"train.py": TARGET, "prepare.py": "X = 1\n"})
        ws.create_branch("autoresearch/t")
    session = Session(repo=tmp_path, state_dir=tmp_path / ".git" / "autoresearch", tag="t")
    gates: dict[int, threading.Event] = {}
    runners = [GatedRunner(score, gates, name=f"gated{i}") for i in range(lanes)]
    config = {"target": "train.py", "readonly": ["prepare.py"], "budget": 1.0, "noise": {"repeats": 0}, **settings}
    loop = Loop(settings=Settings(**config), session=session, workspace=ws, runner=runners[0],
                agent=FakeAgent(script=list(script)), idle_wait_s=lambda _k: 0.0,
                lanes=[(Lane(i, cpus=(i,)), r) for i, r in enumerate(runners)])
    return loop, gates


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)

"""Each budget stops the loop with its reason, exit code 0, and says so to systemd."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from autoresearch.agents.base import Proposal, Usage
from tests.loop_fakes import TARGET, fake_loop, ok


def _stopped(loop) -> str:  # type: ignore[no-untyped-def]
    stops = loop.journal.load().stops
    assert stops, "no stop record"
    assert any(m.startswith("STOPPING=1") for m in loop.notifier.sent)
    return stops[-1].reason


def test_max_experiments(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0), ok(1.0), ok(0.5)], limits={"max_experiments": 2})
    result = loop.run()
    assert result.exit_code == 0 and "max_experiments" in _stopped(loop)
    assert len(loop.journal.load().completed()) == 2


def test_max_cost_usd(tmp_path: Path) -> None:
    def costly(ctx):  # type: ignore[no-untyped-def]
        return Proposal(content=TARGET + f"# {ctx.n}\n", description="paid", usage=Usage(input_tokens=10, cost_usd=0.6))

    loop = fake_loop(tmp_path, [ok(2.0), ok(1.0), ok(0.5), ok(0.2)], [costly] * 4, limits={"max_cost_usd": 1.0})
    result = loop.run()
    assert result.exit_code == 0 and "max_cost_usd" in _stopped(loop)
    assert len(loop.journal.load().completed()) == 3  # baseline + two paid proposals (0.6 + 0.6 >= 1.0)


def test_max_gpu_hours(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0), ok(1.0)], limits={"max_gpu_hours": 1e-9})
    loop.runner.delay_s = 0.01  # type: ignore[attr-defined]
    result = loop.run()
    assert result.exit_code == 0 and "max_gpu_hours" in _stopped(loop)
    assert len(loop.journal.load().completed()) == 1


def test_stop_at(tmp_path: Path) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    loop = fake_loop(tmp_path, [ok(2.0)], limits={"stop_at": past})
    result = loop.run()
    assert result.exit_code == 0 and "stop_at" in _stopped(loop)
    assert loop.journal.load().completed() == []


def test_ready_and_status_are_sent(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0)], limits={"max_experiments": 1})
    loop.run()
    sent = loop.notifier.sent
    assert sent[0].startswith("READY=1\nSTATUS=")
    assert any(m.startswith("STATUS=running #0") for m in sent)
    assert any("best val_bpb 2.000000" in m for m in sent)

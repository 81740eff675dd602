"""Resume after a stop at each phase: the interrupted experiment is settled once, nothing doubles."""

from __future__ import annotations

import threading
from pathlib import Path

from autoresearch.git.workspace import FakeWorkspace
from autoresearch.journal.store import Journal
from tests.loop_fakes import TARGET, fake_loop, ok


def _first_two(tmp_path: Path) -> FakeWorkspace:
    loop = fake_loop(tmp_path, [ok(2.0)], limits={"max_experiments": 1})
    loop.run()
    assert isinstance(loop.workspace, FakeWorkspace)
    return loop.workspace


def _proposed(journal: Journal, ws: FakeWorkspace, n: int) -> None:
    journal.phase(n, "proposed", parent=ws.head(), baseline=False, description="try", content=TARGET + "# n\n",
                  content_sha256="x", agent="fake", meta={}, usage={}, propose_s=0.1, when="2026-11-26T00:00:00+00:00")


def _committed(tmp_path: Path, ws: FakeWorkspace) -> tuple[Journal, str]:
    """Experiment 1 proposed and committed, as a crash before its run would leave it."""
    journal = Journal(tmp_path / ".git/autoresearch/journal.jsonl")
    _proposed(journal, ws, 1)
    sha = ws.commit_file(ws.head(), "train.py", TARGET + "# n\n", "try", "2026-11-26T00:00:00+00:00")
    journal.phase(1, "committed", commit=sha)
    return journal, sha


def _resume(tmp_path: Path, ws: FakeWorkspace, runs: list, total: int = 3) -> object:
    loop = fake_loop(tmp_path, runs, limits={"max_experiments": total})
    loop.workspace = ws
    loop.run()
    return loop


def _rows(tmp_path: Path) -> list[list[str]]:
    return [r.split("\t") for r in (tmp_path / "results.tsv").read_text().splitlines()[1:]]


def test_resume_from_proposed_commits_and_runs(tmp_path: Path) -> None:
    ws = _first_two(tmp_path)
    journal = Journal(tmp_path / ".git/autoresearch/journal.jsonl")
    _proposed(journal, ws, 1)
    _resume(tmp_path, ws, [ok(1.0), ok(3.0)])
    rows = _rows(tmp_path)
    assert [r[3] for r in rows] == ["keep", "keep", "discard"]
    assert rows[1][4] == "try"
    assert sorted(journal.load().experiments) == [0, 1, 2]


def test_resume_from_proposed_after_commit_gives_same_sha(tmp_path: Path) -> None:
    ws = _first_two(tmp_path)
    journal = Journal(tmp_path / ".git/autoresearch/journal.jsonl")
    _proposed(journal, ws, 1)
    sha = ws.commit_file(ws.head(), "train.py", TARGET + "# n\n", "try", "2026-11-26T00:00:00+00:00")
    ws.dirty = ["train.py"]  # the crash also left the tree in the middle of things
    _resume(tmp_path, ws, [ok(1.0)], total=2)
    assert journal.load().experiments[1].commit == sha


def test_resume_from_running_reaps_and_records_interrupted_once(tmp_path: Path) -> None:
    ws = _first_two(tmp_path)
    journal, _ = _committed(tmp_path, ws)
    journal.phase(1, "running", handle={"kind": "process", "pgid": 999999, "start_ticks": 1})
    loop = _resume(tmp_path, ws, [ok(1.0)])
    assert loop.runner.reaped == [{"kind": "process", "pgid": 999999, "start_ticks": 1}]  # type: ignore[attr-defined]
    rows = _rows(tmp_path)
    assert [r[3] for r in rows] == ["keep", "crash", "keep"]
    assert rows[1][4] == "try [interrupted: daemon died during the run]"
    assert ws.head() == ws.refs["refs/autoresearch/t/2"]


def test_resume_from_finished_records_without_rerunning(tmp_path: Path) -> None:
    ws = _first_two(tmp_path)
    journal, sha = _committed(tmp_path, ws)
    journal.phase(1, "finished", cause="ok", metric=1.25, memory_gb=0.0, wall_s=1.0, gpu_count=0)
    loop = _resume(tmp_path, ws, [], total=2)
    assert loop.runner.specs == []  # type: ignore[attr-defined]
    assert _rows(tmp_path)[1][:4] == [sha[:7], "1.250000", "0.0", "keep"]


def test_torn_journal_line_is_skipped(tmp_path: Path) -> None:
    ws = _first_two(tmp_path)
    path = tmp_path / ".git/autoresearch/journal.jsonl"
    with path.open("a") as fh:
        fh.write('{"type": "phase", "n": 1, "pha')
    _resume(tmp_path, ws, [ok(1.0)], total=2)
    assert [r[3] for r in _rows(tmp_path)] == ["keep", "keep"]
    assert all(line.endswith("}") for line in path.read_text().splitlines())


def test_stop_event_interrupts_running_experiment(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0), ok(1.0)])
    loop.runner.delay_s = 30  # type: ignore[attr-defined]
    threading.Timer(0.3, loop.stop_event.set).start()
    result = loop.run()
    assert result.reason == "signal" and result.exit_code == 0
    rows = _rows(tmp_path)
    assert len(rows) == 1 and rows[0][3] == "crash" and "interrupted" in rows[0][4]

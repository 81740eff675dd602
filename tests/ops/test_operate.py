"""Operating a repo (issue 16, item 3): --version, status --json (rows, runs, errors), the daemon's PID,
stop, logs, status --watch and run's table on a terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from autoresearch import __version__
from autoresearch.cli.control import lock_holder
from autoresearch.cli.watch import watch
from autoresearch.journal.store import Journal
from tests.conftest import GIT_ENV, NO_REPEATS, cli, make_repo
from tests.subprocs import reaped, terminated

SLOW = "import time\nLR = 0.5\ntime.sleep(60)\nprint('val_bpb: 1.0')\n"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, **NO_REPEATS, **extra}


def _daemon(repo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env())


def _wait_running(repo: Path, daemon: subprocess.Popen[str]) -> None:
    journal = Journal(repo / ".git" / "autoresearch" / "journal.jsonl")
    deadline = time.monotonic() + 60
    while (pending := journal.load().pending()) is None or pending.phase != "running":
        assert daemon.poll() is None and time.monotonic() < deadline, "the daemon never started its run"
        time.sleep(0.1)


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"autoresearch {__version__}"


@pytest.mark.parametrize("where", ["uninitialised", "not_git"])
def test_status_json_errors_are_json_on_stdout(tmp_path: Path, where: str) -> None:
    repo = make_repo(tmp_path / "r") if where == "uninitialised" else tmp_path
    result = cli("status", str(repo), "--json")
    assert result.returncode == 2, result
    error = json.loads(result.stdout)  # the whole of stdout: one JSON object, no log line
    assert error["exit_code"] == 2 and error["kind"] == "RepoError"
    assert ("autoresearch init" if where == "uninitialised" else "not a git repository") in error["error"]


def test_status_json_has_rows_and_runs(initialised: Path) -> None:
    repo = initialised
    assert cli("run", str(repo), "--max-experiments", "3").returncode == 0
    status = json.loads(cli("status", str(repo), "--json").stdout)
    tsv = (repo / "results.tsv").read_text().splitlines()
    assert [list(r.values()) for r in status["rows"]] == [line.split("\t") for line in tsv[1:]]
    assert list(status["rows"][0]) == tsv[0].split("\t")
    assert [r["n"] for r in status["runs"]] == [0, 1, 2]
    assert [r["status"] for r in status["runs"]] == [r["status"] for r in status["rows"]]
    assert all(Path(r["log"]).is_file() for r in status["runs"])
    assert status["pid"] is None and status["session"]["state"] == "stopped" and status["session"]["tag"] == "t1"


def test_stop_ends_the_daemon_and_status_shows_its_pid(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", train=SLOW).resolve()
    assert cli("init", str(repo), "--tag", "s", "--runner", "process", "--budget", "60").returncode == 0
    with reaped(_daemon(repo)) as daemon:
        _wait_running(repo, daemon)
        status = json.loads(cli("status", str(repo), "--json").stdout)
        assert status["pid"] == daemon.pid and status["session"]["state"] == "running"
        table = cli("status", str(repo), env={"COLUMNS": "200"}).stdout
        assert f"s on autoresearch/s (running, pid {daemon.pid})" in table
        t0 = time.monotonic()
        stop = cli("stop", str(repo))
        assert stop.returncode == 0, stop.stderr
        assert f"sent SIGTERM to pid {daemon.pid}" in stop.stdout and f"stopped pid {daemon.pid}" in stop.stdout
        assert daemon.wait(timeout=5) == 0, "stop returned before the daemon ended"
        assert time.monotonic() - t0 < 30
    rows = (repo / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) == 1 and "[interrupted]" in rows[0], "the running experiment was recorded"
    again = cli("stop", str(repo))
    assert again.returncode == 0 and "no autoresearch daemon runs on" in again.stdout
    assert json.loads(cli("status", str(repo), "--json").stdout)["pid"] is None


HOLDER = """
import fcntl, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
fh = open(sys.argv[1], "a+")
fcntl.flock(fh, fcntl.LOCK_EX)
fh.truncate(0); fh.write(str(os.getpid())); fh.flush()
print("locked", flush=True)
time.sleep(120)
"""


def test_stop_times_out_on_a_daemon_that_does_not_end(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r")
    state = repo / ".git" / "autoresearch"
    state.mkdir()
    assert lock_holder(state) is None
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(state / "daemon.lock")], stdout=subprocess.PIPE,
                              text=True)
    with reaped(holder):
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert lock_holder(state) == holder.pid
        result = cli("stop", str(repo), "--timeout", "1")
        assert result.returncode == 1
        assert f"pid {holder.pid} still runs after 1 s" in result.stderr and holder.poll() is None
    assert lock_holder(state) is None  # killed: the kernel dropped its lock


def test_logs_shows_the_journal_readably_and_follows(initialised: Path) -> None:
    repo = initialised
    assert cli("run", str(repo), "--max-experiments", "2").returncode == 0
    full = cli("logs", str(repo)).stdout.splitlines()
    assert "session t1 started on autoresearch/t1" in full[0]
    assert any("#0 proposed  baseline: baseline" in line for line in full)
    assert any("#1 finished  ok  metric " in line for line in full)
    assert full[-1].endswith("stopped: max_experiments reached (2) (exit 0)")
    last = cli("logs", str(repo), "-n", "2").stdout.splitlines()
    assert last == full[-2:]
    follower = subprocess.Popen([sys.executable, "-m", "autoresearch", "logs", str(repo), "-f", "-n", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    with reaped(follower):
        assert follower.stderr is not None and follower.stderr.readline().startswith("following ")
        Journal(repo / ".git" / "autoresearch" / "journal.jsonl").append(
            {"type": "wait", "what": "engine", "reason": "docker down"})
        assert follower.stdout is not None
        ready, _, _ = select.select([follower.stdout], [], [], 15)
        assert ready, "logs -f printed nothing"
        assert follower.stdout.readline().rstrip().endswith("waiting for the engine: docker down")
        terminated(follower)


def test_watch_redraws_with_runs_in_flight_and_the_last_rows() -> None:
    frames = [
        {"experiments": 0, "keep": 0, "discard": 0, "crash": 0, "gpu_hours": 0.0, "cost_usd": 0.0, "rows": [],
         "runs": [{"n": 0, "lane": 0, "phase": "running", "started": None, "description": "baseline",
                   "status": None}]},
        {"experiments": 1, "keep": 1, "discard": 0, "crash": 0, "gpu_hours": 0.0, "cost_usd": 0.0,
         "rows": [{"commit": "abc1234", "val_bpb": "1.2", "status": "keep", "description": "[red]baseline"}],
         "runs": []},
    ]
    calls: list[int] = []

    def read() -> dict[str, Any]:
        calls.append(1)
        return frames[min(len(calls), 2) - 1]

    buffer = StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    watch(read, console, 0.01, threading.Event(), frames=2)
    text = buffer.getvalue()
    assert len(calls) == 2
    first, second = text.split("in flight")[0], text.split("in flight")[1]
    assert "experiments" in first and "baseline" in second  # frame 1: the run in flight
    assert "last 1 of 1 rows" in text and "[red]baseline" in text  # frame 2: the row, markup shown as text


def _pty_run(args: list[str], env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run the CLI with its stdout on a terminal; returns its exit code and what the terminal showed."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", *args], stdout=child, stderr=subprocess.PIPE,
                            env={**env, "COLUMNS": "160"})
    os.close(child)
    chunks: list[bytes] = []
    with reaped(proc):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    data = os.read(main, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        if proc.poll() is None:  # still running at the deadline (status --watch): a kill ends it
            proc.kill()
        code = proc.wait(timeout=30)
    os.close(main)
    return code, b"".join(chunks).decode(errors="replace")


def test_run_on_a_terminal_prints_the_table(initialised: Path) -> None:
    code, shown = _pty_run(["run", str(initialised), "--max-experiments", "3"], _env(), timeout=120)
    assert code == 0, shown
    assert "session t1 on branch autoresearch/t1" in shown and "up to 3 experiments" in shown
    table = [line for line in shown.splitlines() if line.startswith("#")]
    assert len(table) == 3 and "baseline" in table[0] and "keep" in table[0]
    assert "val_bpb" in table[0]
    assert '"event"' not in shown and "experiment.finished" not in shown, "no log lines on the terminal"
    assert "improvement" in shown  # the summary at the end


def test_status_watch_on_a_terminal_follows_the_journal(initialised: Path) -> None:
    repo = initialised
    journal = Journal(repo / ".git" / "autoresearch" / "journal.jsonl")

    def propose_later() -> None:
        time.sleep(2.0)
        journal.proposed(0, parent="0" * 40, description="a run seen live", content="x = 1\n", baseline=True)

    threading.Thread(target=propose_later, daemon=True).start()
    code, shown = _pty_run(["status", str(repo), "--watch", "--interval", "0.3"], _env(), timeout=4.0)
    assert code == -signal.SIGKILL  # still watching until killed
    assert shown.count("autoresearch t1") >= 3, "redrawn"
    assert "in flight" in shown and "a run seen live" in shown


def test_watch_off_a_terminal_prints_frame_after_frame() -> None:
    summaries = iter([{"experiments": n, "keep": n, "discard": 0, "crash": 0, "gpu_hours": 0.0, "cost_usd": 0.0,
                       "rows": [], "runs": []} for n in (1, 2)])
    buffer = StringIO()
    watch(lambda: next(summaries), Console(file=buffer, width=100), 0.01, threading.Event(), frames=2)
    text = buffer.getvalue()
    assert "1 (keep 1, discard 0, crash 0)" in text and "2 (keep 2, discard 0, crash 0)" in text
    assert "\x1b[" not in text, "no cursor movement in a file"


def test_the_holder_is_read_from_proc_locks_as_this_namespace_sees_it() -> None:
    from autoresearch.cli.control import _flock_holder

    dev = os.makedev(0xFE, 0)
    table = ("1: POSIX  ADVISORY  WRITE 77 fe:00:42 0 EOF\n"  # an fcntl lock on the same inode: not the daemon's
             "2: FLOCK  ADVISORY  WRITE 4242 fe:00:42 0 EOF\n"
             "2: -> FLOCK  ADVISORY  WRITE 99 fe:00:42 0 EOF\n")  # a waiter
    assert _flock_holder(dev, 42, "7", table) == 4242  # a container's daemon wrote 7; the host sees 4242
    assert _flock_holder(dev, 43, "7", table) is None
    overlay = os.makedev(0, 0x55)  # stat() on overlayfs names another device: the written pid must agree
    assert _flock_holder(overlay, 42, "4242", table) == 4242
    assert _flock_holder(overlay, 42, "7", table) is None
    assert _flock_holder(dev, 42, "7", "1: FLOCK  ADVISORY  READ 5 fe:00:42 0 EOF\n") is None


def test_log_lines_for_every_record_kind_and_a_replaced_journal(tmp_path: Path) -> None:
    from autoresearch.cli.journal_view import follow, last_lines, line

    at = "2026-12-02T10:00:00.000+00:00"
    assert line({"at": at, "type": "stop", "reason": "signal SIGTERM"}) == \
        "2026-12-02 10:00:00  stopped: signal SIGTERM (exit 0)"
    assert line({"at": at, "type": "phase", "n": 4, "lane": 1, "phase": "finished", "cause": "timeout",
                 "metric": None, "wall_s": 31.0, "detail": "killed\nafter 31 s"}).endswith(
        "#4 finished lane 1  timeout  31.0s  (killed after 31 s)")
    assert line({"type": "usage", "n": 3, "error": "API\noverloaded"}).endswith("proposal failed at #3: API overloaded")
    assert line({"type": "phase", "n": 2, "phase": "recorded", "status": "discard", "reason": "within noise",
                 "confidence": 1.23, "best_metric": 1.5, "row_description": "LR 0.1"}).endswith(
        "#2 discard (within noise)  1.2σ  best 1.500000  LR 0.1")
    assert '"type": "future"' in line({"type": "future", "content": "x" * 1000})  # unknown kinds: raw, short
    journal = tmp_path / "journal.jsonl"
    journal.write_text(json.dumps({"type": "stop", "reason": "a"}) + "\n" + '{"torn')
    shown, offset = last_lines(journal, None)
    assert len(shown) == 1 and offset == journal.read_bytes().index(b'{"torn')
    emitted: list[str] = []
    stop = threading.Event()
    worker = threading.Thread(target=follow, args=(journal, offset, emitted.append, stop, 0.05))
    worker.start()
    time.sleep(0.3)
    with journal.open("a") as fh:
        fh.write('"}\n')  # the torn line completed: not valid JSON, skipped
        fh.write(json.dumps({"type": "stop", "reason": "b"}) + "\n")
    time.sleep(0.3)
    journal.rename(tmp_path / "old.jsonl")  # a new session archived this one
    journal.write_text("")
    worker.join(timeout=5)
    assert not worker.is_alive(), "follow ends when the journal is replaced"
    assert emitted[0].endswith("stopped: b (exit 0)") and "a new session started" in emitted[-1]

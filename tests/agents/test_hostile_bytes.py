"""Hostile suite, "agent-controlled bytes crash or hang the daemon" (issue 18, item 5).

A command agent writes a description full of control and format characters (NUL, terminal escapes,
a C1 CSI, bidi overrides, zero-width characters) and leaves a FIFO in its scratch checkout; a run
grows its target to a sparse 64 GiB. The daemon neither crashes, blocks nor hashes zeros, and no
such character reaches git, results.tsv or ``status``. As root and as nobody (a real ``autoresearch``).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import pytest
import structlog

from autoresearch.agents.prompts import clean_description
from autoresearch.agents.scratch import changed_paths, manifest, read_inside
from autoresearch.errors import ProposalRejected
from autoresearch.git.workspace import GitWorkspace
from autoresearch.journal.ledger import clean_description as ledger_clean
from autoresearch.journal.ledger import parse_results
from autoresearch.journal.records import Proposed
from autoresearch.ops import logs
from autoresearch.ops.safetext import one_line
from autoresearch.runners.hashing import file_hash
from tests.conftest import GIT_ENV, git, make_repo
from tests.runners.hostile import ROOT, as_user, give_to_nobody, workdir

HOSTILE = "step\x00 two \x1b[2J\x1b]0;pwned\x07 \u202eexe.txt\u202c \x9b31m\u200b done\x7f\n"
CLEAN = "step two [2J]0;pwned exe.txt 31m done"
TRAIN = "STEP = 1\nprint('val_bpb: %.4f' % (1.0 + STEP * 0.01))\n"
CLI = f"""
import os, sys
from pathlib import Path
os.mkfifo("trap.fifo")  # opening it for reading would block the daemon for good
Path(sys.argv[1]).write_text(Path(sys.argv[1]).read_text().replace("STEP = 1", "STEP = 0"))
Path(os.environ["AUTORESEARCH_DESCRIPTION_FILE"]).write_text({HOSTILE!r})
"""


def unsafe(text: str) -> list[str]:
    """The control, format and surrogate characters of ``text`` (newlines apart)."""
    return [repr(ch) for ch in text if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Cs")]


def test_one_line_drops_controls_and_formats_and_keeps_the_rest() -> None:
    assert one_line(HOSTILE) == CLEAN
    assert clean_description(HOSTILE) == CLEAN == ledger_clean(HOSTILE)  # the agents' and the TSV's cleaning
    assert one_line("é 中文 emoji 🙂 tab\there") == "é 中文 emoji 🙂 tab here"
    assert unsafe(one_line("".join(map(chr, range(0x2100))) + "\ud800\ufeff\u2066\u2069")) == []


def test_an_old_journal_record_with_a_nul_is_cleaned_when_read() -> None:
    """A journal written before the fix held the NUL: its replay must not crash-loop ``make_commit``."""
    record = Proposed.model_validate({"type": "phase", "phase": "proposed", "n": 1, "parent": "a" * 40,
                                      "description": HOSTILE, "content": "x", "when": "2026-01-01T00:00:00Z"})
    assert record.description == CLEAN


def test_make_commit_takes_a_message_with_a_nul(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "research", train=TRAIN)
    ws = GitWorkspace.open(repo)
    sha = ws.make_commit(ws.head(), "train.py", TRAIN + "# x\n", f"{HOSTILE}\nbody \x1b[1m", "2026-01-01T00:00:00Z")
    message = git(repo, "log", "-1", "--format=%B", sha)
    assert unsafe(message) == [] and message.startswith("step two")


def test_a_fifo_in_the_scratch_checkout_does_not_block(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "train.py").write_text(TRAIN)
    before = manifest(tree)
    os.mkfifo(tree / "trap.fifo")
    os.mkfifo(tree / ".autoresearch-description")
    found: dict[str, object] = {}

    def look() -> None:
        found["changed"] = changed_paths(before, tree)
        try:
            read_inside(tree, ".autoresearch-description")
        except ProposalRejected as exc:
            found["rejected"] = str(exc)

    worker = threading.Thread(target=look, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the daemon blocked on a FIFO"
    assert found["changed"] == [".autoresearch-description", "trap.fifo"]
    assert "not a regular file" in str(found["rejected"])


def test_a_sparse_64_gib_file_is_marked_by_its_size_unread(tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text(TRAIN)
    small = file_hash(path)
    assert small is not None and len(small) == 64
    os.truncate(path, 64 << 30)
    big = file_hash(path)
    assert big is not None and big.startswith(f"oversize:{64 << 30}:")  # a hash would mean it read 64 GiB
    os.truncate(path, 5 << 20)
    assert file_hash(path) != big  # a later write changes the marker (size, inode change time)
    (tmp_path / "link").symlink_to(path)
    assert file_hash(tmp_path / "link") == f"link:{path}"


def _config(cli: Path, python: str) -> str:
    return "\n".join([
        'target = "train.py"', f'run = "{python} train.py"', "budget = 5", "grace = 5",
        'runner = "process"', 'agent = "command"', "[limits]", "max_experiments = 2", "[noise]", "repeats = 0",
        "[process]", 'gpus = "none"', "kill_timeout_s = 1",
        "[command_agent]", f'command = "{python} {cli} {{target}}"', f'mounts = ["{cli}"]', "writable = []",
        "timeout_s = 60",
    ]) + "\n"


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_hostile_description_and_fifo_through_a_real_daemon(user: str) -> None:
    with workdir() as base:
        cli = base / "cli.py"
        cli.write_text(CLI)
        repo = make_repo(base / "research", train=TRAIN)
        (repo / "autoresearch.toml").write_text(_config(cli, sys.executable))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "config")
        give_to_nobody(base)
        env = {"PATH": os.environ["PATH"], "HOME": str(base), "PYTHONPATH": f"{ROOT / 'daemon'}:{ROOT}", **GIT_ENV,
               "COLUMNS": "200"}  # status shows the whole description

        def autoresearch(*args: str) -> str:
            done = subprocess.run(as_user([sys.executable, "-m", "autoresearch", *args], user), cwd=base, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout + done.stderr

        autoresearch("init", str(repo), "--tag", "bytes")
        logs = autoresearch("run", str(repo))
        status = autoresearch("status", str(repo))
        rows = parse_results((repo / "results.tsv").read_text())
        history = subprocess.run(["git", "-c", "safe.directory=*", "log", "--all", "--format=%B"], cwd=repo,
                                 capture_output=True, text=True, check=True).stdout
    assert [r["status"] for r in rows] == ["keep", "keep"], rows
    assert rows[1]["description"] == CLEAN
    assert CLEAN in history and CLEAN in status
    for text in (history, status, logs, (repo / "results.tsv").read_text() if repo.exists() else ""):
        assert unsafe(text) == []


def test_the_console_log_shows_no_control_character() -> None:
    """On a terminal (the console renderer) agent-written values are cleaned; JSON lines escape them."""
    try:
        for as_json in (False, True):
            out = io.StringIO()
            logs.configure(stream=out, json=as_json)
            structlog.get_logger().info("command_agent.dropped_changes", paths=[HOSTILE], error=HOSTILE)
            assert unsafe(out.getvalue()) == [] and "pwned" in out.getvalue(), out.getvalue()
    finally:
        structlog.reset_defaults()

"""A hostile command agent (issue 10) in a real loop with the bubblewrap process runner: it writes
outside its checkout, plants a shadow module and a git hook, swaps the read-only file in its checkout
and from a lingering process. All of it is contained: only the target's text is taken, the run uses
the committed prepare.py, the daemon goes on, and nothing is left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from structlog.testing import capture_logs

from autoresearch.cli.commands import build_loop, init_repo
from autoresearch.journal.ledger import parse_results
from autoresearch.runners import procs
from tests.conftest import GIT_ENV, git, make_repo
from tests.runners.hostile import NOBODY, ROOT, as_user, give_to_nobody, workdir
from tests.runners.process_helpers import marked_pids, token

TRAIN = "import prepare\nSTEP = 1\nprint('val_bpb: %.4f' % (1.0 + prepare.X + STEP * 0.01))\n"

LINGER = """
import sys, time
from pathlib import Path
for _ in range(300):
    try:
        Path(sys.argv[1], 'prepare.py').write_text('X = -0.5\\n')
    except OSError:
        pass
    time.sleep(0.1)
"""

CLI = """
import json, os, subprocess, sys
from pathlib import Path
repo, target, probe, mark = os.environ["REPO"], sys.argv[1], os.environ["PROBE"], os.environ["MARK"]
attempts = {}
def attempt(name, fn):
    try:
        fn()
        attempts[name] = "DONE"
    except OSError as exc:
        attempts[name] = f"refused {exc.errno}"
def shadow():
    Path(repo, "prepare").mkdir()
    Path(repo, "prepare", "__init__.py").write_text("X = -0.5\\n")
attempt("up", lambda: Path("../../../../prepare.py").write_text("X = -0.5\\n"))
attempt("abs", lambda: Path(repo, "prepare.py").write_text("X = -0.5\\n"))
attempt("shadow", shadow)
attempt("hook", lambda: Path(repo, ".git", "hooks", "reference-transaction").write_text("#!/bin/sh\\ntouch /tmp/x\\n"))
attempt("runs_write", lambda: Path("/runs/0/run.log").write_text("val_bpb: 0.0\\n"))
attempts["runs_read"] = "val_bpb" in Path("/runs/0/run.log").read_text()
attempts["repo_visible"] = os.path.exists(repo) or os.path.exists("../../../../.git")
attempts["scratch_git"] = Path(".git").is_dir() and not Path(".git", "autoresearch").exists()
Path("prepare.py").write_text("X = -0.5\\n")  # the swap in its own checkout: dropped
subprocess.Popen([sys.executable, "-c", LINGER, repo, mark], start_new_session=True)
Path(target).write_text(Path(target).read_text().replace("STEP = 1", "STEP = 2"))
Path(probe, "attempts.json").write_text(json.dumps(attempts))
print("step 2")
"""


def _config(cli: Path, probe: Path, python: str) -> str:
    allow = ["PATH", "REPO", "PROBE", "MARK"]
    return "\n".join([
        'target = "train.py"', 'readonly = ["prepare.py"]', f'run = "{python} train.py"', "budget = 5", "grace = 5",
        'runner = "process"', 'agent = "command"', "[limits]", "max_experiments = 2", "[noise]", "repeats = 0",
        "[process]", 'gpus = "none"', "kill_timeout_s = 1",
        "[command_agent]", f'command = "{python} {cli} {{target}}"', f'mounts = ["{cli}"]',
        f'writable = ["{probe}"]', f"env_allow = {json.dumps(allow)}", "timeout_s = 60",
    ]) + "\n"


def test_hostile_command_agent_is_contained(tmp_path: Path, monkeypatch: object) -> None:
    mark = token()
    repo, probe, extra = _research(tmp_path, mark)
    for key, value in extra.items():
        monkeypatch.setenv(key, value)  # type: ignore[attr-defined]
    init_repo(repo, "hostile", {})
    loop = build_loop(repo, {})
    with capture_logs() as logs:
        loop.run()  # baseline, then the hostile proposal; the loop ends at max_experiments and does not die
    attempts = json.loads((probe / "attempts.json").read_text())
    assert all(attempts[k].startswith("refused") for k in ("up", "abs", "shadow", "hook", "runs_write")), attempts
    assert attempts["runs_read"] is True  # the run logs are there to read (at /runs), not to change
    assert attempts["repo_visible"] is False and attempts["scratch_git"] is True
    state = loop.journal.load()
    first = state.experiments[1]
    assert first.status == "discard" and first.metric == 2.02  # committed prepare.py: X = 1, no shadow
    assert next(e for e in logs if e["event"] == "command_agent.dropped_changes")["paths"] == ["prepare.py"]
    assert procs.wait_gone(lambda: marked_pids(mark), 10.0)  # the lingering swapper died with the sandbox
    assert (repo / "prepare.py").read_text() == "X = 1\n" and not (repo / "prepare").exists()
    assert not (repo / ".git" / "hooks" / "reference-transaction").exists()
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    assert not list((repo / ".git" / "autoresearch" / "scratch").glob("*"))


def _research(base: Path, mark: str) -> tuple[Path, Path, dict[str, str]]:
    """The research repo with the hostile CLI configured, its probe folder, and the environment it needs."""
    cli, probe = base / "cli.py", base / "probe"
    probe.mkdir()
    cli.write_text(CLI.replace("LINGER", repr(LINGER)))
    repo = make_repo(base / "research", train=TRAIN, extra={"prepare.py": "X = 1\n"})
    (repo / "autoresearch.toml").write_text(_config(cli, probe, sys.executable))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "config")
    return repo, probe, {"REPO": str(repo), "PROBE": str(probe), "MARK": mark}


def test_hostile_command_agent_is_contained_under_a_non_root_daemon() -> None:
    """The same attack on a daemon running as nobody in the docker group (a real `autoresearch run`)."""
    mark = token()
    with workdir() as base:
        repo, probe, extra = _research(base, mark)
        give_to_nobody(base)
        env = {"PATH": os.environ["PATH"], "HOME": str(base), "PYTHONPATH": f"{ROOT / 'daemon'}:{ROOT}",
               **GIT_ENV, **extra}
        for args in (["init", str(repo), "--tag", "hostile"], ["run", str(repo)]):
            done = subprocess.run(as_user([sys.executable, "-m", "autoresearch", *args], "nobody"), cwd=base,
                                  env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
        attempts = json.loads((probe / "attempts.json").read_text())
        assert all(attempts[k].startswith("refused") for k in ("up", "abs", "shadow", "hook", "runs_write")), attempts
        assert attempts["repo_visible"] is False and attempts["runs_read"] is True
        assert (repo / "results.tsv").stat().st_uid == NOBODY  # written by the daemon: it ran as nobody
        rows = parse_results((repo / "results.tsv").read_text())
        assert [r["status"] for r in rows] == ["keep", "discard"] and float(rows[1]["val_bpb"]) == 2.02
        assert '"command_agent.dropped_changes"' in done.stdout + done.stderr
        assert procs.wait_gone(lambda: marked_pids(mark), 10.0)
        assert (repo / "prepare.py").read_text() == "X = 1\n" and not (repo / "prepare").exists()
        status = subprocess.run(["git", "-c", "safe.directory=*", "status", "--porcelain", "--untracked-files=all"],
                                cwd=repo, capture_output=True, text=True, check=True)
        assert status.stdout == ""

"""The command line as a user meets it: init's checks, exit codes, and that failures change nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.runners import procs
from tests.conftest import cli, git, make_repo
from tests.runners.process_helpers import marked_pids, token
from tests.subprocs import reaped


def _snapshot(repo: Path) -> tuple[str, str, list[str]]:
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if "objects" not in p.parts)
    return git(repo, "status", "--porcelain", "--ignored"), git(repo, "show-ref"), files


def _fails_cleanly(repo: Path, *args: str, message: str) -> None:
    before = _snapshot(repo)
    result = cli("init", str(repo), *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(repo) == before


def test_dirty_tree(repo: Path) -> None:
    (repo / "train.py").write_text("changed = 1\n")
    _fails_cleanly(repo, message="uncommitted changes (train.py)")


def test_existing_branch(repo: Path) -> None:
    git(repo, "branch", "autoresearch/taken")
    _fails_cleanly(repo, "--tag", "taken", message="branch autoresearch/taken already exists")


@pytest.mark.parametrize("tag", ["a b", "../x", "x..y", "-x", "x.lock"])
def test_bad_tag(repo: Path, tag: str) -> None:
    _fails_cleanly(repo, "--tag", tag, "--runner", "process", "--prepare", "python3 prepare.py",
                   message=f"--tag {tag!r} cannot name a branch")


def test_missing_target(repo: Path) -> None:
    _fails_cleanly(repo, "--target", "model.py", message="model.py is not a committed file")


def test_unknown_metric(repo: Path) -> None:
    _fails_cleanly(repo, "--metric", "accuracy", message="metric 'accuracy' is unknown")


def test_not_a_git_repo(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "train.py").write_text("x = 1\n")
    result = cli("init", str(folder))
    assert result.returncode == 2 and "is not a git repository" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["train.py"]


def test_bad_config_value(repo: Path) -> None:
    _fails_cleanly(repo, "--direction", "sideways", message="direction")


def test_unknown_config_key(repo: Path) -> None:
    (repo / "autoresearch.toml").write_text('target = "train.py"\nbudjet = 3\n')
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "config")
    _fails_cleanly(repo, message="budjet [key budjet in ")
    _fails_cleanly(repo, message="autoresearch.toml]: Extra inputs are not permitted")


def test_run_without_init(repo: Path) -> None:
    result = cli("run", str(repo))
    assert result.returncode == 2 and "autoresearch init" in result.stderr


def test_init_then_run_then_status(initialised: Path) -> None:
    repo = initialised
    assert git(repo, "status", "--porcelain") == ""  # results.tsv is ignored, not committed
    assert (repo / "results.tsv").read_text() == "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
    assert (repo / ".git/autoresearch/cache/data.txt").read_text() == "prepared"
    result = cli("run", str(repo), "--max-experiments", "4")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    finished = [e for e in events if e["event"] == "experiment.finished"]
    assert len(finished) == 4 and finished[0]["description"] == "baseline"
    rows = (repo / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) == 4
    status = json.loads(cli("status", str(repo), "--json").stdout)
    assert status["experiments"] == 4
    assert status["keep"] + status["discard"] + status["crash"] == 4
    assert status["best_commit"].startswith(git(repo, "rev-parse", "autoresearch/t1")[:7])
    # Run again: resumes numbering, no row lost or doubled.
    assert cli("run", str(repo), "--max-experiments", "6").returncode == 0
    rows2 = (repo / "results.tsv").read_text().splitlines()[1:]
    assert rows2[:4] == rows and len(rows2) == 6
    kept = [r.split("\t")[0] for r in rows2 if r.split("\t")[3] == "keep"]
    log = git(repo, "log", "--format=%h", "--abbrev=7", "autoresearch/t1").split()
    assert set(kept) <= set(log)
    discarded = [r.split("\t")[0] for r in rows2 if r.split("\t")[3] != "keep"]
    assert not set(discarded) & set(log)
    refs = git(repo, "for-each-ref", "--format=%(objectname:short=7)", "refs/autoresearch/t1")
    assert set(discarded) <= set(refs.split())


def test_baseline_crash_exit_2(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "r", train="raise SystemExit('broken')\nprint('val_bpb:', 1.0)\n")
    assert cli("init", str(repo), "--tag", "x", "--runner", "process").returncode == 0
    result = cli("run", str(repo))
    assert result.returncode == 2
    assert "the baseline (unchanged train.py) crashed [exit:1]" in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--agent", "claude"], "Invalid value for '--agent'"),
    (["--runner", "podman"], "Invalid value for '--runner'"),
    (["--log-level", "verbose"], "Invalid value for '--log-level'"),
    (["--budget", "-5"], "budget [flag --budget]: Input should be greater than 0 (got -5.0)"),
    (["--max-experiments", "0"], "limits.max_experiments [flag --max-experiments]: Input should be greater"),
])
def test_run_bad_flags_name_the_flag(initialised: Path, args: list[str], message: str) -> None:
    before = _snapshot(initialised)
    result = cli("run", str(initialised), *args, env={"COLUMNS": "200"})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "autoresearch.toml" not in result.stderr  # the file is fine: the flag is not
    assert _snapshot(initialised) == before


@pytest.mark.parametrize(("env", "message"), [
    ({"AUTORESEARCH_BUDGET": "-5"}, "budget [env AUTORESEARCH_BUDGET]: Input should be greater than 0"),
    ({"AUTORESEARCH_AGENT": "claude"}, "agent [env AUTORESEARCH_AGENT]: Input should be 'offline', 'anthropic'"),
    ({"AUTORESEARCH_RUNNER": "podman"},
     "runner [env AUTORESEARCH_RUNNER]: Input should be 'process', 'docker' or 'slurm'"),
])
def test_run_bad_env_names_the_variable(initialised: Path, env: dict[str, str], message: str) -> None:
    before = _snapshot(initialised)
    result = cli("run", str(initialised), env=env)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert _snapshot(initialised) == before


@pytest.mark.parametrize(("line", "message"), [
    ("budget = -5", "budget [key budget in "),
    ('agent = "claude"', "agent [key agent in "),
    ('runner = "podman"', "runner [key runner in "),
])
def test_run_bad_toml_names_the_key(initialised: Path, line: str, message: str) -> None:
    # The session's config is the one committed on its branch (init leaves the checkout on main).
    git(initialised, "checkout", "-q", "autoresearch/t1")
    toml = initialised / "autoresearch.toml"
    kept = [old for old in toml.read_text().splitlines() if old.split(" = ")[0] != line.split(" = ")[0]]
    toml.write_text("\n".join([*kept, line]) + "\n")
    git(initialised, "commit", "-qam", "bad value")
    before = _snapshot(initialised)
    result = cli("run", str(initialised))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "autoresearch/t1:autoresearch.toml]: " in result.stderr
    assert _snapshot(initialised) == before


def test_metric_must_be_printed_as_a_whole_word(tmp_path: Path) -> None:
    train = "loss = 0.5\nprint(f'val_loss: {loss:.4f}')\n"
    repo = make_repo(tmp_path / "r", train=train)
    _fails_cleanly(repo, "--metric", "val_los", message="metric 'val_los' is unknown (from flag --metric)")
    _fails_cleanly(repo, "--metric", "loss", message="metric 'loss' is unknown")  # a format field is no line
    result = cli("init", str(repo), "--metric", "val_loss", "--runner", "process", "--budget", "1")
    assert result.returncode == 0, result.stderr


def test_failed_prepare_exits_2_and_leaves_nothing_behind(repo: Path) -> None:
    (repo / "prepare.py").write_text("print('downloading shard 1 of 9')\nraise SystemExit('disk full')\n")
    git(repo, "commit", "-qam", "broken prepare")
    before = _snapshot(repo)
    result = cli("init", str(repo), "--tag", "p", "--runner", "process", "--prepare", "python3 prepare.py")
    assert result.returncode == 2, result.stderr
    assert "prepare ('python3 prepare.py', from flag --prepare) failed [exit:1]" in result.stderr
    assert "downloading shard 1 of 9" in result.stderr and "disk full" in result.stderr  # the log's tail
    assert not (repo / ".git" / "autoresearch").exists()
    assert _snapshot(repo) == before
    assert git(repo, "branch", "--list", "autoresearch/*") == ""


def test_init_says_which_runner_and_why(tmp_path: Path) -> None:
    chosen = cli("init", str(make_repo(tmp_path / "a")), "--runner", "process")
    assert chosen.returncode == 0 and "runner: process (from flag --runner)" in chosen.stdout
    from_env = cli("init", str(make_repo(tmp_path / "b")), env={"AUTORESEARCH_RUNNER": "process"})
    assert "runner: process (from env AUTORESEARCH_RUNNER)" in from_env.stdout
    no_engine = cli("init", str(make_repo(tmp_path / "c")),
                    env={"AUTORESEARCH_DOCKER__HOST": f"unix://{tmp_path}/no-such.sock", "COLUMNS": "300"})
    assert no_engine.returncode == 0, no_engine.stderr
    assert "runner: process (docker unavailable: " in no_engine.stdout
    session_branch = git(tmp_path / "c", "for-each-ref", "--format=%(refname)", "refs/heads/autoresearch/")
    assert "runner" not in git(tmp_path / "c", "show", f"{session_branch}:autoresearch.toml")


def test_sigterm_mid_run_stops_the_job_records_it_and_exits_0(tmp_path: Path) -> None:
    mark = token()  # the run's PIDs are its sandbox's own: it is found by a unique sleep instead
    slow = (f"import os\nLR = 0.5\nprint('pid', os.getpid(), flush=True)\n"
            f"os.execv('/bin/sleep', ['sleep', '{mark}'])\nprint('val_bpb: 1.0')\n")
    repo = make_repo(tmp_path / "r", train=slow).resolve()
    assert cli("init", str(repo), "--tag", "s", "--runner", "process", "--budget", "60").returncode == 0
    daemon = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    with reaped(daemon):
        log = repo / ".git/autoresearch/runs/0/run.log"
        deadline = time.monotonic() + 60
        while not (log.exists() and "pid" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        status = json.loads(cli("status", str(repo), "--json").stdout)
        assert status["running"]["n"] == 0 and status["running"]["phase"] == "running"
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0
    assert procs.wait_gone(lambda: marked_pids(mark), 5.0), "the training process survived SIGTERM"
    rows = (repo / "results.tsv").read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].split("\t")[3] == "crash" and "[interrupted]" in rows[0]
    assert '"loop.stopped"' in out and '"signal"' in out
    assert git(repo, "status", "--porcelain") == ""



def test_failed_prepare_keeps_the_previous_session(initialised: Path) -> None:
    repo = initialised
    state = repo / ".git" / "autoresearch"
    journal, log = (state / "journal.jsonl").read_bytes(), (state / "runs" / "prepare.log").read_bytes()
    before = _snapshot(repo)
    result = cli("init", str(repo), "--tag", "t2",
                 env={"AUTORESEARCH_PREPARE": "python3 -c \"raise SystemExit('no space left')\""})
    assert result.returncode == 2 and "from env AUTORESEARCH_PREPARE) failed [exit:1]" in result.stderr
    assert "no space left" in result.stderr
    assert _snapshot(repo) == before
    assert (state / "journal.jsonl").read_bytes() == journal
    assert (state / "runs" / "prepare.log").read_bytes() == log
    assert (state / "cache" / "data.txt").read_text() == "prepared"

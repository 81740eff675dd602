"""Sessions (issue 16, item 2): init --tag new says where the old session went; archived sessions keep
their results.tsv, journal and report; `sessions` lists them; --tag reaches them from status, logs,
report and run."""

from __future__ import annotations

import json
from pathlib import Path

from autoresearch.sessions.catalog import all_sessions, archive_active, find
from tests.conftest import cli, git


def _sessions(repo: Path) -> dict[str, dict]:
    result = cli("sessions", str(repo), "--json")
    assert result.returncode == 0, result.stderr
    return {s["tag"]: s for s in json.loads(result.stdout)}


def test_a_new_session_archives_the_old_one_and_keeps_everything(initialised: Path) -> None:
    repo = initialised
    assert cli("run", str(repo), "--max-experiments", "3").returncode == 0
    assert cli("report", str(repo)).returncode == 0
    old_rows = (repo / "results.tsv").read_text()
    old_journal = (repo / ".git/autoresearch/journal.jsonl").read_bytes()
    best = json.loads(cli("status", str(repo), "--json").stdout)["best_mean"]

    init = cli("init", str(repo), "--tag", "t2")
    assert init.returncode == 0, init.stderr
    said = " ".join(init.stdout.split())
    assert "the previous session 't1' is archived in" in said and "its branch autoresearch/t1" in said
    assert f"autoresearch status {repo} --tag t1" in said and f"autoresearch run {repo} --tag t1" in said
    archived = find(repo, repo / ".git/autoresearch", "t1")
    assert not archived.active and archived.folder.parent.name == "archive"
    assert archived.results.read_text() == old_rows
    assert archived.journal.read_bytes() == old_journal
    assert (archived.report_dir / "report.md").is_file() and (archived.folder / "runs" / "0" / "run.log").is_file()
    assert (repo / "results.tsv").read_text().count("\n") == 1, "the new session starts empty"
    assert git(repo, "rev-parse", "--verify", "autoresearch/t1")

    listed = _sessions(repo)
    assert listed["t1"]["state"] == "archived" and listed["t1"]["experiments"] == 3 and listed["t1"]["best"] == best
    assert listed["t2"]["state"] == "stopped" and listed["t2"]["experiments"] == 0 and listed["t2"]["pid"] is None
    table = cli("sessions", str(repo), env={"COLUMNS": "200"}).stdout
    assert "t1" in table and "archived" in table and archived.folder.name in table

    status = json.loads(cli("status", str(repo), "--json", "--tag", "t1").stdout)
    assert status["experiments"] == 3 and status["session"]["state"] == "archived" and len(status["rows"]) == 3
    assert all(Path(r["log"]).is_file() for r in status["runs"])
    assert "session t1 started" in cli("logs", str(repo), "--tag", "t1").stdout
    report = cli("report", str(repo), "--tag", "t1")
    assert report.returncode == 0 and str(archived.report_dir) in " ".join(report.stdout.split()).replace(" ", "")

    missing = cli("status", str(repo), "--tag", "nope")
    assert missing.returncode == 2 and "no session 'nope' (sessions: t1, t2" in missing.stderr


def test_run_with_an_archived_tag_resumes_it(initialised: Path) -> None:
    repo = initialised
    assert cli("run", str(repo), "--max-experiments", "2").returncode == 0
    rows = (repo / "results.tsv").read_text().splitlines()
    assert cli("init", str(repo), "--tag", "t2").returncode == 0
    assert cli("run", str(repo), "--max-experiments", "1").returncode == 0
    t2_rows = (repo / "results.tsv").read_text()

    result = cli("run", str(repo), "--tag", "t1", "--max-experiments", "4")
    assert result.returncode == 0, result.stderr
    assert "session 't1' is active again; the previous session 't2' is archived in" in " ".join(result.stderr.split())
    now = (repo / "results.tsv").read_text().splitlines()
    assert now[:3] == rows and len(now) == 5, "t1 went on from its own rows"
    listed = _sessions(repo)
    assert listed["t1"]["state"] == "stopped" and listed["t1"]["experiments"] == 4
    assert listed["t2"]["state"] == "archived" and find(repo, repo / ".git/autoresearch", "t2").results.read_text() \
        == t2_rows
    again = cli("run", str(repo), "--tag", "t1", "--max-experiments", "4")  # the active one: nothing to switch
    assert again.returncode == 0 and "active again" not in again.stderr


def test_archive_order_and_lookup(tmp_path: Path) -> None:
    """The newest archive of a tag wins; a folder without a journal is no session."""
    repo = tmp_path / "r"
    state = repo / ".git" / "autoresearch"
    state.mkdir(parents=True)
    (state / "archive" / "junk").mkdir(parents=True)
    for n, tag in enumerate(("a", "b", "a")):
        (state / "journal.jsonl").write_text(json.dumps({"type": "session", "tag": tag}) + "\n")
        (state / "runs").mkdir()
        (state / "runs" / "mark").write_text(str(n))
        (repo / "results.tsv").write_text(f"commit\n{n}\n")
        moved = archive_active(repo, state)
        assert moved is not None and moved.tag == tag and not (state / "journal.jsonl").exists()
    assert [s.tag for s in all_sessions(repo, state)] == ["a", "b", "a"]
    newest = find(repo, state, "a")
    assert (newest.folder / "runs" / "mark").read_text() == "2" and newest.results.read_text() == "commit\n2\n"
    assert archive_active(repo, state) is None  # no active session: nothing to move


def test_remove_an_archived_session(initialised: Path) -> None:
    repo = initialised
    assert cli("run", str(repo), "--max-experiments", "1").returncode == 0
    assert cli("init", str(repo), "--tag", "t2").returncode == 0
    folder = find(repo, repo / ".git/autoresearch", "t1").folder
    active = cli("sessions", str(repo), "--remove", "t2")
    assert active.returncode == 2 and "session 't2' is the active one" in active.stderr
    removed = cli("sessions", str(repo), "--remove", "t1")
    assert removed.returncode == 0, removed.stderr
    assert not folder.exists() and git(repo, "rev-parse", "--verify", "autoresearch/t1"), "the branch stays"
    assert list(_sessions(repo)) == ["t2"]
    assert cli("sessions", str(repo), "--remove", "t1").returncode == 2

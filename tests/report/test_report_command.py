"""report_command: where the files go, that they never dirty the repo, and the --watch loop."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autoresearch.journal.ledger import write_results
from autoresearch.journal.store import Journal
from autoresearch.report.command import Rendered, exclude_from_git, report_command, watch_report
from autoresearch.report.data import state_dir
from tests.report.report_samples import MIXED, Exp, journal_path, write_experiment, write_ledger


def git_status(repo: Path) -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def test_writes_into_the_state_folder_by_default(ledger_repo: Callable[..., Path]) -> None:
    repo = ledger_repo(MIXED)
    exclude_before = (repo / ".git" / "info" / "exclude").read_text()
    paths = report_command(repo, None, watch=False, notebook=True)
    assert [p.name for p in paths] == ["progress.png", "report.md", "analysis.ipynb"]
    default = (repo / ".git" / "autoresearch" / "report").resolve()
    assert all(p.parent == default and p.stat().st_size > 0 for p in paths)
    assert git_status(repo) == ""
    assert (repo / ".git" / "info" / "exclude").read_text() == exclude_before  # nothing in the tree to hide
    assert not (repo / "progress.png").exists()


def test_out_dir_is_the_repo_root_keeps_the_tree_clean(ledger_repo: Callable[..., Path]) -> None:
    repo = ledger_repo(MIXED)
    paths = report_command(repo, repo, watch=False, notebook=True)
    assert all(p.parent == repo.resolve() for p in paths)
    assert git_status(repo) == ""
    report_command(repo, repo, watch=False, notebook=True)  # again: no duplicate exclude lines
    exclude = (repo / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count("/progress.png") == exclude.count("/report.md") == exclude.count("/analysis.ipynb") == 1
    assert "" not in exclude[-4:]


def test_never_overwrites_a_tracked_file(ledger_repo: Callable[..., Path]) -> None:
    from autoresearch.errors import ConfigError

    repo = ledger_repo(MIXED)
    (repo / "progress.png").write_bytes(b"the author's own chart")
    identity = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "-C", str(repo), "add", "progress.png"], check=True)
    subprocess.run(["git", "-C", str(repo), *identity, "commit", "-q", "-m", "chart"], check=True)
    with pytest.raises(ConfigError, match=r"would overwrite progress\.png, tracked by git"):
        report_command(repo, repo, watch=False, notebook=False)
    assert (repo / "progress.png").read_bytes() == b"the author's own chart"
    assert not (repo / "report.md").exists() and git_status(repo) == ""
    with pytest.raises(ConfigError, match="is a file"):
        report_command(repo, repo / "progress.png", watch=False, notebook=False)


def test_no_session_is_an_error(repo: Path) -> None:
    from autoresearch.errors import RepoError

    with pytest.raises(RepoError, match="has no autoresearch session"):
        report_command(repo, None, watch=False, notebook=False)
    assert not (repo / ".git" / "autoresearch").exists()


def test_out_dir_inside_and_outside_the_repo(ledger_repo: Callable[..., Path], tmp_path: Path) -> None:
    repo = ledger_repo(MIXED)
    inside = report_command(repo, repo / "reports" / "night1", watch=False, notebook=False)
    assert inside[0] == (repo / "reports" / "night1" / "progress.png").resolve()
    assert "/reports/night1/report.md" in (repo / ".git" / "info" / "exclude").read_text()
    assert git_status(repo) == ""
    before = (repo / ".git" / "info" / "exclude").read_text()
    outside = report_command(repo, tmp_path / "elsewhere", watch=False, notebook=False)
    assert all(p.exists() for p in outside)
    assert (repo / ".git" / "info" / "exclude").read_text() == before


def test_exclude_without_git_does_nothing(tmp_path: Path) -> None:
    assert exclude_from_git(tmp_path, [tmp_path / "report.md"]) == []
    assert not (tmp_path / ".git").exists()


def test_existing_notebook_is_left_alone(ledger_repo: Callable[..., Path]) -> None:
    repo = ledger_repo(MIXED)
    (repo / "analysis.ipynb").write_text("my edits")
    report_command(repo, repo, watch=False, notebook=True)
    assert (repo / "analysis.ipynb").read_text() == "my edits"


def test_linked_worktree_finds_the_main_state(ledger_repo: Callable[..., Path], tmp_path: Path) -> None:
    repo = ledger_repo(MIXED)
    identity = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "-C", str(repo), *identity, "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    tree = tmp_path / "tree"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(tree)], check=True)
    assert state_dir(tree).resolve() == (repo / ".git" / "autoresearch").resolve()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_watch_renders_after_each_recorded_experiment(ledger_repo: Callable[..., Path]) -> None:
    repo = ledger_repo(MIXED[:3])
    journal = Journal(journal_path(repo))
    renders: list[Rendered] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=watch_report,
        args=(repo, repo, "val_bpb", "min"),
        kwargs={"interval_s": 0.01, "stop": stop, "on_render": renders.append, "dpi": 30},
    )
    thread.start()
    try:
        wait_for(lambda: len(renders) == 1)
        assert renders[0].stats.kept == 2
        # A run starting changes the journal but records nothing: no new render.
        write_experiment(journal, 3, Exp("keep", 0.9, "new idea"), None, record=False)
        time.sleep(0.2)
        assert len(renders) == 1
        journal.phase(3, "finished", cause="ok", metric=0.9, wall_s=1.0, gpu_count=1)
        journal.phase(3, "recorded", status="keep", row_description="new idea")
        write_results(repo, journal.load(), "val_bpb")
        wait_for(lambda: len(renders) == 2)
        assert renders[1].stats.kept == 3
        assert "4 experiments, 2 kept improvements" in (repo / "report.md").read_text()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_watch_stops_after_max_cycles_and_on_ctrl_c(ledger_repo: Callable[..., Path]) -> None:
    repo = ledger_repo(MIXED)
    paths = report_command(repo, None, watch=True, notebook=False, interval_s=0.01, max_cycles=3)
    assert [p.name for p in paths] == ["progress.png", "report.md"]

    def interrupt(_: Rendered) -> None:
        raise KeyboardInterrupt

    paths = report_command(repo, None, watch=True, notebook=True, interval_s=0.01, on_render=interrupt)
    assert [p.name for p in paths] == ["progress.png", "report.md", "analysis.ipynb"]


def test_invalid_config_is_reported(repo: Path) -> None:
    from autoresearch.errors import ConfigError

    write_ledger(repo, MIXED[:1])
    (repo / "autoresearch.toml").write_text('direction = "sideways"\n')
    with pytest.raises(ConfigError):
        report_command(repo, None, watch=False, notebook=False)

"""The user's checkout and the session branch are theirs (issue 16, item 1), on a real git repo with the
loop's fakes for runs and proposals: the daemon never writes the checkout except to fast-forward a clean
checkout of the session branch, a dirty one is left behind (and status says why), and a commit someone
else put on the branch is adopted, never lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoresearch.agents.base import FakeAgent
from autoresearch.cli.commands import read_status
from autoresearch.cli.render import branch_line
from autoresearch.coordinator.loop import Loop
from autoresearch.errors import ConfigError, RepoError
from autoresearch.git import branchsync
from autoresearch.git.workspace import GitWorkspace
from autoresearch.ops.config import Settings
from autoresearch.runners.base import FakeRunner, RunSpec
from autoresearch.sessions.session import start_session
from tests.conftest import FAST_TRAIN, git, make_repo
from tests.loop_fakes import ok

BETTER = FAST_TRAIN.replace("LR = 0.5", "LR = 0.1")
SETTINGS: dict[str, Any] = {"target": "train.py", "readonly": ["prepare.py"], "budget": 1.0, "runner": "process",
                            "noise": {"repeats": 0}, "proposals": {"ahead": 0}}


def _session(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "r").resolve()
    ws = GitWorkspace.open(repo)
    start_session(ws, Settings(**SETTINGS), "t", 'target = "train.py"\nreadonly = ["prepare.py"]\nbudget = 1\n')
    return repo


def _loop(repo: Path, runs: list[Any], script: list[Any], total: int, **extra: Any) -> Loop:
    ws = GitWorkspace.open(repo)
    from autoresearch.sessions.session import load_session

    settings = Settings(**{**SETTINGS, "limits": {"max_experiments": total}, **extra})
    return Loop(settings=settings, session=load_session(ws), workspace=ws, runner=FakeRunner(script=list(runs)),
                agent=FakeAgent(script=list(script)), idle_wait_s=lambda _k: 0.0)


def _tip(repo: Path) -> str:
    return git(repo, "rev-parse", "autoresearch/t")


def test_init_leaves_the_checkout_alone(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(repo, "status", "--porcelain") == "" and not (repo / "autoresearch.toml").exists()
    assert git(repo, "rev-parse", "autoresearch/t~1") == git(repo, "rev-parse", "main")  # the config commit
    assert "budget = 1" in git(repo, "show", "autoresearch/t:autoresearch.toml")


def test_an_edit_during_a_run_survives(tmp_path: Path) -> None:
    repo = _session(tmp_path)

    def edit_then_ok(spec: RunSpec) -> tuple[str, str]:
        with (repo / "train.py").open("a") as fh:  # the user edits their checkout while the daemon runs
            fh.write("# edit\n")
        (repo / "notes.txt").write_text("mine\n")
        return ok(2.0 if spec.n == 0 else 1.0)

    loop = _loop(repo, [edit_then_ok, edit_then_ok, ok(3.0)], [(BETTER, "lr"), (FAST_TRAIN + "# x\n", "x")], 3)
    assert loop.run().exit_code == 0
    assert (repo / "train.py").read_text() == FAST_TRAIN + "# edit\n# edit\n"
    assert (repo / "notes.txt").read_text() == "mine\n"
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == "M train.py"
    state = loop.journal.load()
    assert [e.status for e in state.completed()] == ["keep", "keep", "discard"]
    assert _tip(repo) == state.experiments[1].commit  # the branch moved on the keep, not on the discard


def test_clean_checkout_of_the_branch_follows_the_best(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    git(repo, "checkout", "-q", "autoresearch/t")
    loop = _loop(repo, [ok(2.0), ok(1.0), ok(3.0)], [(BETTER, "lr"), (FAST_TRAIN + "# x\n", "x")], 3)
    assert loop.run().exit_code == 0
    best = loop.journal.load().experiments[1].commit
    assert git(repo, "rev-parse", "HEAD") == best and _tip(repo) == best
    assert (repo / "train.py").read_text() == BETTER and git(repo, "status", "--porcelain") == ""
    assert read_status(repo)["branch"]["state"] == "ok"


def test_dirty_checkout_is_left_behind_and_status_says_why(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    git(repo, "checkout", "-q", "autoresearch/t")
    base = git(repo, "rev-parse", "HEAD")
    (repo / "prepare.py").write_text("# my local change\n")
    loop = _loop(repo, [ok(2.0), ok(1.0)], [(BETTER, "lr")], 2)
    assert loop.run().exit_code == 0
    best = loop.journal.load().experiments[1].commit
    assert _tip(repo) == base and git(repo, "rev-parse", "HEAD") == base  # nothing moved under the user
    assert (repo / "prepare.py").read_text() == "# my local change\n" and (repo / "train.py").read_text() == FAST_TRAIN
    branch = read_status(repo)["branch"]
    assert branch["state"] == "behind" and branch["want"] == best
    line = branch_line(branch)
    assert "is behind the best" in line and "uncommitted changes (prepare.py)" in line and str(repo) in line
    git(repo, "checkout", "--", "prepare.py")  # the user drops the change: the next step fast-forwards
    assert branchsync.sync(GitWorkspace.open(repo), "autoresearch/t", loop.journal.load()).kind == "ok"
    assert git(repo, "rev-parse", "HEAD") == best and (repo / "train.py").read_text() == BETTER


def test_untracked_file_in_the_way_is_not_overwritten(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    git(repo, "checkout", "-q", "autoresearch/t")
    (repo / "extra.py").write_text("the user's untracked file\n")
    ws = GitWorkspace.open(repo)
    head = git(repo, "rev-parse", "HEAD")
    adds = ws.make_commit(head, "extra.py", "the daemon's\n", "adds extra.py", "2026-01-01T00:00:00+00:00")
    checkout = ws.checkouts("autoresearch/t")[0]
    with pytest.raises(RepoError, match=r"untracked working tree files would be overwritten"):
        ws.fast_forward(checkout, adds)
    assert (repo / "extra.py").read_text() == "the user's untracked file\n" and git(repo, "rev-parse", "HEAD") == head


def test_move_branch_never_overwrites_a_commit_made_meanwhile(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    ws = GitWorkspace.open(repo)
    old = _tip(repo)
    new = ws.make_commit(old, "train.py", BETTER, "daemon", "2026-01-01T00:00:00+00:00")
    theirs = ws.make_commit(old, "train.py", FAST_TRAIN + "# theirs\n", "user", "2026-01-01T00:00:00+00:00")
    git(repo, "update-ref", "refs/heads/autoresearch/t", theirs)
    assert not ws.move_branch("autoresearch/t", new, old)
    assert _tip(repo) == theirs


def test_foreign_commit_between_runs_is_adopted_and_kept(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    assert _loop(repo, [ok(2.0)], [], 1).run().exit_code == 0
    git(repo, "checkout", "-q", "autoresearch/t")
    (repo / "train.py").write_text(FAST_TRAIN.replace("WIDTH = 8", "WIDTH = 12"))
    git(repo, "commit", "-qam", "mine: width 12")
    mine = git(repo, "rev-parse", "HEAD")
    branch = read_status(repo)["branch"]
    assert branch["state"] == "foreign" and "the next run measures it as the new base" in branch_line(branch)
    loop = _loop(repo, [ok(1.5), ok(1.0)], [(BETTER.replace("WIDTH = 8", "WIDTH = 12"), "lr")], 3)
    assert loop.run().exit_code == 0
    state = loop.journal.load()
    adopted = state.experiments[1]
    assert adopted.adopted == mine and adopted.commit == mine and adopted.status == "keep"
    assert adopted.reason == "adopted" and adopted.description.startswith(f"adopted {mine[:7]}")
    assert state.experiments[2].parent == mine and state.experiments[2].status == "keep"
    assert git(repo, "merge-base", "--is-ancestor", mine, "autoresearch/t") == ""  # still on the branch
    assert git(repo, "rev-parse", "HEAD") == state.experiments[2].commit  # and the clean checkout followed
    rows = (repo / "results.tsv").read_text().splitlines()[1:]
    assert f"adopted {mine[:7]}" in rows[1]


def test_foreign_commit_during_a_run_is_not_lost(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    other = tmp_path / "other"
    git(repo, "worktree", "add", "-q", str(other), "autoresearch/t")

    def commit_meanwhile(spec: RunSpec) -> tuple[str, str]:
        (other / "prepare.py").write_text("X = 2\n")
        git(other, "commit", "-qam", "theirs, during the run")
        return ok(1.0)

    loop = _loop(repo, [ok(2.0), commit_meanwhile, ok(1.8)], [(BETTER, "lr")], 3)
    assert loop.run().exit_code == 0
    state = loop.journal.load()
    theirs = git(other, "rev-parse", "HEAD")
    assert state.experiments[1].status == "keep"  # the keep was judged, but the branch was not moved over theirs
    assert state.experiments[2].adopted == theirs and state.experiments[2].status == "keep"
    assert git(repo, "merge-base", "--is-ancestor", theirs, "autoresearch/t") == ""
    assert git(other, "rev-parse", "HEAD") == _tip(repo) and git(other, "status", "--porcelain") == ""  # followed
    assert git(repo, "rev-parse", "refs/autoresearch/t/1") == state.experiments[1].commit  # the keep: still reachable


def test_adoption_survives_a_restart_without_doubling(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    assert _loop(repo, [ok(2.0)], [], 1).run().exit_code == 0
    ws = GitWorkspace.open(repo)
    mine = ws.make_commit(_tip(repo), "prepare.py", "X = 3\n", "mine", "2026-01-01T00:00:00+00:00")
    git(repo, "update-ref", "refs/heads/autoresearch/t", mine)
    stopped = _loop(repo, [], [], 1)
    stopped._reconcile()  # the adoption is journaled, then the daemon dies before running it
    stopped._reconcile()
    assert [e.adopted for e in stopped.journal.load().open()] == [mine]
    loop = _loop(repo, [ok(1.9)], [], 2)
    assert loop.run().exit_code == 0
    state = loop.journal.load()
    assert [e.adopted for e in state.completed()] == [None, mine] and state.best() is not None
    assert state.best().commit == mine and _tip(repo) == mine


def test_measured_key_change_needs_a_new_session(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    assert _loop(repo, [ok(2.0)], [], 1).run().exit_code == 0
    message = r"budget changed since session t began[\s\S]*new session[\s\S]*budget: 1.0 in this session, now 2.0"
    with pytest.raises(ConfigError, match=message):
        _loop(repo, [], [], 2, budget=2.0).run()
    state = _loop(repo, [], [], 2).journal.load()
    assert len(state.completed()) == 1 and state.stops[-1].exit_code == 2 and "budget" in state.stops[-1].reason
    assert _loop(repo, [ok(1.9)], [], 2, proposals={"ahead": 1}).run().exit_code == 0  # not measured: fine


def test_fast_forward_cut_by_a_kill_is_finished(tmp_path: Path) -> None:
    repo = _session(tmp_path)
    git(repo, "checkout", "-q", "autoresearch/t")
    loop = _loop(repo, [ok(2.0), ok(1.0)], [(BETTER, "lr")], 2)
    (repo / "prepare.py").write_text("# dirty while the keep lands\n")
    assert loop.run().exit_code == 0
    base, best = _tip(repo), loop.journal.load().experiments[1].commit
    git(repo, "checkout", "--", "prepare.py")
    git(repo, "read-tree", "-m", "-u", base, best)  # what merge --ff-only leaves when killed before its ref update
    assert git(repo, "status", "--porcelain") == "M  train.py"
    assert branchsync.sync(GitWorkspace.open(repo), "autoresearch/t", loop.journal.load()).kind == "ok"
    assert git(repo, "rev-parse", "HEAD") == best and git(repo, "status", "--porcelain") == ""
    (repo / "train.py").write_text("# the user's own edit of the same file\n")  # not the keep's tree: left alone
    git(repo, "update-ref", "refs/heads/autoresearch/t", base)
    assert branchsync.sync(GitWorkspace.open(repo), "autoresearch/t", loop.journal.load()).kind == "behind"
    assert (repo / "train.py").read_text() == "# the user's own edit of the same file\n"

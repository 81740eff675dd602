"""Git under lanes: commits built beside the checkout, and the 3-way merge of the target."""

from __future__ import annotations

from pathlib import Path

from autoresearch.git.workspace import GitWorkspace
from tests.conftest import FAST_TRAIN, git


def test_make_commit_leaves_index_checkout_and_refs_alone(repo: Path) -> None:
    ws = GitWorkspace.open(repo)
    head = ws.head()
    (repo / "train.py").chmod(0o755)
    git(repo, "commit", "-qam", "executable")
    head = ws.head()
    sha = ws.make_commit(head, "train.py", FAST_TRAIN.replace("LR = 0.5", "LR = 0.4"), "lr", "2026-01-01T00:00:00Z")
    assert ws.head() == head and ws.dirty_files() == [] and (repo / "train.py").read_text() == FAST_TRAIN
    assert ws.read(sha, "train.py") == FAST_TRAIN.replace("LR = 0.5", "LR = 0.4")
    assert git(repo, "rev-parse", f"{sha}^") == head
    assert git(repo, "ls-tree", sha, "--", "train.py").split()[0] == "100755"  # the file's mode is kept
    assert ws.changed_paths(head, sha) == ["train.py"]
    again = ws.make_commit(head, "train.py", FAST_TRAIN.replace("LR = 0.5", "LR = 0.4"), "lr", "2026-01-01T00:00:00Z")
    assert again == sha  # deterministic: a re-commit after a crash gives the same sha


def test_merge_file_merges_or_reports_a_conflict(repo: Path) -> None:
    ws = GitWorkspace.open(repo)
    base = "A = 1\nB = 2\nC = 3\n"
    assert ws.merge_file(base, "A = 5\nB = 2\nC = 3\n", "A = 1\nB = 2\nC = 9\n") == "A = 5\nB = 2\nC = 9\n"
    assert ws.merge_file(base, "A = 5\nB = 2\nC = 3\n", "A = 6\nB = 2\nC = 3\n") is None

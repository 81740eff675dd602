"""Fixtures: a fresh git repo, and a builder of sample ledgers in it (see report_samples)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.report.report_samples import Exp, git_init, write_ledger


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return git_init(tmp_path / "research")


@pytest.fixture
def ledger_repo(repo: Path) -> Callable[..., Path]:
    """``ledger_repo(exps, metric=..., direction=..., pending=..., skipped_costs=...)`` -> the repo."""

    def make(exps: Sequence[Exp], **kwargs: object) -> Path:
        write_ledger(repo, exps, **kwargs)  # type: ignore[arg-type]
        return repo

    return make

"""One classification of a run's end for every runner (issue 9, item 7)."""

from __future__ import annotations

import pytest

from autoresearch.runners.ending import classify, exit_cause


@pytest.mark.parametrize(("code", "cause"), [(0, "ok"), (3, "exit:3"), (-9, "signal:9"), (None, "interrupted")])
def test_exit_cause(code: int | None, cause: str) -> None:
    assert exit_cause(code) == cause


def test_a_changed_file_is_a_violation_also_after_a_timeout() -> None:
    assert classify("timeout", changed=["prepare.py"])[0] == "violation"
    assert classify("ok", changed=["train.py"]) == (
        "violation", "train.py changed during the run (the committed version stands)")
    assert classify("interrupted", changed=["prepare.py"])[0] == "interrupted"
    assert classify("docker", changed=["prepare.py"])[0] == "docker"


def test_oom_only_replaces_an_exit() -> None:
    assert classify("exit:137", oom=True)[0] == "oom"
    assert classify("timeout", oom=True)[0] == "timeout"
    assert classify("ok", "") == ("ok", "")

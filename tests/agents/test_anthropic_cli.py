"""`autoresearch run --agent anthropic` as a user runs it: fatal agent errors exit 2 without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from autoresearch.agents.fake_messages import Fail, FakeMessagesAPI
from tests.agents.conftest import KEY
from tests.conftest import GIT_ENV, NO_CGROUPS, NO_REPEATS


def autoresearch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "AUTORESEARCH_"))}
    clean.pop("CREDENTIALS_DIRECTORY", None)
    return subprocess.run(
        [sys.executable, "-m", "autoresearch", *args], capture_output=True, text=True, timeout=120,
        env={**clean, **GIT_ENV, **NO_REPEATS, **NO_CGROUPS, **env},
    )  # fmt: skip


def init(repo: Path) -> None:
    done = autoresearch(
        "init", str(repo), "--tag", "t", "--runner", "process", "--readonly", "prepare.py", "--budget", "2", env={}
    )
    assert done.returncode == 0, done.stderr


def test_missing_key_exits_2_before_any_run(research: Path) -> None:
    init(research)
    done = autoresearch("run", str(research), "--agent", "anthropic", env={})
    assert done.returncode == 2, done.stderr
    assert "no Anthropic API key" in done.stderr and "Traceback" not in done.stderr + done.stdout
    assert not (research / ".git" / "autoresearch" / "runs" / "0").exists()  # not even the baseline ran


def test_wrong_key_exits_2_with_a_clear_message(research: Path) -> None:
    init(research)
    with FakeMessagesAPI([Fail(401, "invalid x-api-key")]) as fake:
        env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.url}
        done = autoresearch("run", str(research), "--agent", "anthropic", "--max-experiments", "3", env=env)
    output = done.stderr + done.stdout
    assert done.returncode == 2, output
    assert "rejected the API key (401" in output and "Traceback" not in output
    assert KEY not in output
    assert len(fake.requests) == 1  # 401 is never retried
    rows = (research / "results.tsv").read_text().splitlines()
    assert len(rows) == 2 and "baseline" in rows[1]  # the baseline ran; the proposal never did

"""Hostile suite, files a run leaves behind (issue 18, item 5): a target grown to a sparse 64 GiB is a
violation found from its size, without hashing 64 GiB of zeros; the daemon goes on. As root and as nobody."""

from __future__ import annotations

import pytest

from tests.runners.hostile import run_daemon, workdir

GROW = "import os\nos.truncate('train.py', 64 << 30)\nprint('grown', os.stat('train.py').st_size)\n"


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_a_target_grown_past_the_cap_is_a_violation(user: str) -> None:
    with workdir() as d:
        out, text = run_daemon(d, GROW, user)
    assert f"grown {64 << 30}" in text, text
    assert out["cause"] == "violation" and "train.py" in out["detail"], out

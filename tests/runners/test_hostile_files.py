"""Hostile suite, files a run leaves behind (issue 18, item 5): a target grown to a sparse 16 GiB is a
violation found from its size, without hashing 16 GiB of zeros; the daemon goes on. As root and as nobody.

16 GiB, not the red team's 64: RLIMIT_FSIZE (= process.write_cap, 20g by default) already stops a run
from growing any file past the cap (EFBIG), so the unread size check is shown below it."""

from __future__ import annotations

import pytest

from tests.runners.hostile import run_daemon, workdir

GROW = "import os\nos.truncate('train.py', 16 << 30)\nprint('grown', os.stat('train.py').st_size)\n"


@pytest.mark.parametrize("user", ["root", "nobody"])
def test_a_target_grown_past_the_cap_is_a_violation(user: str) -> None:
    with workdir() as d:
        out, text = run_daemon(d, GROW, user)
    assert f"grown {16 << 30}" in text, text
    assert out["cause"] == "violation" and "train.py" in out["detail"], out

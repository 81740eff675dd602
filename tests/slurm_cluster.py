"""The Slurm cluster the Slurm tests run on (one node, fake GPUs; `.ci/slurm-setup.sh start`)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def slurm_answers() -> bool:
    """``sinfo`` runs and reports a node."""
    if shutil.which("sinfo") is None:
        return False
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Skips without a cluster, except where ``AUTORESEARCH_REQUIRE_SLURM=1`` (CI): there it fails."""
    if slurm_answers():
        return
    message = "no Slurm cluster answers (sinfo); start one with `bash .ci/slurm-setup.sh start`"
    if os.environ.get("AUTORESEARCH_REQUIRE_SLURM") == "1":
        pytest.fail(message)
    pytest.skip(message)

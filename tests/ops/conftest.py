"""Fixtures for the operations tests (systemd units, compose, the daemon's image).

Tests that need a Docker engine skip without one, unless AUTORESEARCH_REQUIRE_DOCKER=1 (CI), where
they fail instead. The daemon image comes from AUTORESEARCH_DAEMON_IMAGE when that names an existing
image (CI builds it first with .ci/ops-check.sh); otherwise it is built from this checkout under a
throwaway tag and removed at the end. Base images (autoresearch-daemon-base:bookworm) stay cached by
tag, since making one takes a debootstrap (~1 minute).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("AUTORESEARCH_REQUIRE_DOCKER") == "1"
# Everything the ops tests create carries this label, so a failed test's leftovers can be found.
LABEL = "autoresearch.test=ops"


def unavailable(reason: str) -> None:
    """Skip, or fail under AUTORESEARCH_REQUIRE_DOCKER=1."""
    if REQUIRE:
        pytest.fail(f"{reason} (AUTORESEARCH_REQUIRE_DOCKER=1, so this is a failure, not a skip)")
    pytest.skip(reason)


def docker(*args: str, check: bool = True, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess[str]:
    """The docker CLI, output captured as text."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout, **kw)


@pytest.fixture(scope="session")
def engine() -> None:
    """A reachable Docker engine (and its CLI), or skip/fail."""
    if shutil.which("docker") is None:
        unavailable("no docker CLI on PATH")
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=20)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        unavailable(f"no Docker engine reachable: {getattr(exc, 'stderr', '') or exc}")


@pytest.fixture(scope="session")
def daemon_image(engine: None) -> Iterator[str]:
    """The daemon's image for this checkout (see the module docstring)."""
    given = os.environ.get("AUTORESEARCH_DAEMON_IMAGE")
    if given and docker("image", "inspect", given, check=False).returncode == 0:
        yield given
        return
    tag = f"autoresearch-ops-test:{uuid.uuid4().hex[:8]}"
    build = subprocess.run(
        [str(ROOT / "scripts" / "build-daemon-image.sh"), "--tag", tag],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if build.returncode != 0:
        pytest.fail(f"building the daemon image failed:\n{build.stdout}\n{build.stderr}")
    try:
        yield tag
    finally:
        docker("rmi", "-f", tag, check=False)

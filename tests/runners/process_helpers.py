"""Helpers for the process-runner tests: a snapshot-backed RunSpec, runners per sandbox mode, marked processes."""

from __future__ import annotations

import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from autoresearch.ops.config import ProcessSettings
from autoresearch.runners.base import RunSpec
from autoresearch.runners.bwrap import check_bwrap
from autoresearch.runners.enforcers import detect
from autoresearch.runners.gpu import NoGpu
from autoresearch.runners.process import ProcessRunner


def make_runner(sandbox: str = "bwrap", repo_id: str = "", **settings: Any) -> ProcessRunner:
    """A process runner with the rlimit fallback, or (``cgroups=`` given: only inside a container with its
    own cgroup namespace, never on the test host) the enforcer ``detect`` finds."""
    cgroups = settings.pop("cgroups", None)
    ps = ProcessSettings(sandbox=sandbox, kill_timeout_s=settings.pop("kill_timeout_s", 1.0), gpus="none",
                         cgroups=cgroups or "off", **settings)
    bwrap = check_bwrap() if sandbox == "bwrap" else None  # fails (not skips) without bubblewrap
    prlimit = shutil.which("prlimit")
    enforcer = detect(ps.cgroups, prlimit)
    return ProcessRunner(gpu=NoGpu(), settings=ps, repo_id=repo_id, bwrap=bwrap, enforcer=enforcer, prlimit=prlimit)


def make_spec(tmp_path: Path, script: str, budget: float = 0.5, grace: float = 0.5, **kw: Any) -> RunSpec:
    """A run of ``python3 train.py`` from a snapshot holding ``script`` and a read-only prepare.py."""
    snap = tmp_path / "snapshot"
    snap.mkdir(exist_ok=True)
    (snap / "train.py").write_text(script)
    (snap / "prepare.py").write_text("X = 1\n")
    return RunSpec(
        n=kw.pop("n", 1),
        kind=kw.pop("kind", "train"),
        command=kw.pop("command", f"{sys.executable} train.py"),
        workdir=tmp_path / "workdir-never-used",
        budget=budget,
        grace=grace,
        env={"AUTORESEARCH_TIME_BUDGET": str(budget)},
        log_path=tmp_path / "run" / "run.log",
        log_cap_bytes=kw.pop("cap", 1 << 20),
        target="train.py",
        readonly=("prepare.py",),
        snapshot=kw.pop("snapshot", snap),
        **kw,
    )


def token() -> str:
    """A unique sleep length (e.g. 300.418273): a process running `sleep <token>` is findable in /proc."""
    return f"300.{secrets.randbelow(10**6):06d}"


def marked_pids(mark: str) -> set[int]:
    """Live host processes whose command line holds ``mark``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if mark in cmdline and state != "Z" and "pytest" not in cmdline:
            found.add(int(entry.name))
    return found

"""The repo's own environment: when ``setup`` must run, running it, and what it was built from.

setup runs at init and again before an experiment whose commit changed one of its committed inputs
(``setup_inputs``), or when the command, the runner or the environment itself changed. What the
environment was last built from is the stamp ``.git/autoresearch/setup.json``, written only after a
setup that succeeded and removed before each setup starts, so after a failed or interrupted one
setup runs again next time, whatever the inputs are then.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from autoresearch.errors import ConfigError
from autoresearch.journal.ledger import write_atomic
from autoresearch.runners.base import RunOutcome

if TYPE_CHECKING:
    from autoresearch.coordinator.phases import Phases

log = structlog.get_logger("autoresearch.setup")

DEFAULT_INPUTS = ("pyproject.toml", "uv.lock", "requirements*.txt")
STAMP_FILE = "setup.json"
SETUP_BUDGET_S = 3600.0
"""Building an environment is not training: it gets an hour, whatever the training budget."""


def input_hashes(root: Path, patterns: list[str] | None) -> dict[str, str]:
    """sha256 of each committed file in ``root`` (a snapshot) matching the setup inputs."""
    found: dict[str, str] = {}
    for pattern in patterns if patterns is not None else DEFAULT_INPUTS:
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@dataclasses.dataclass(frozen=True)
class Built:
    """What the environment is built from: the inputs' hashes, the command and the runner."""

    inputs: dict[str, str]
    command: str
    runner: str

    def changes(self, before: dict[str, Any] | None, env_dir: Path) -> list[str]:
        """Why setup must run (empty: the environment is up to date)."""
        if not any(env_dir.iterdir()):
            return ["missing environment"]
        if before is None:
            return ["no finished setup"]  # the last one failed or was interrupted: the environment is suspect
        old = before.get("inputs") or {}
        why = sorted(name for name in {*old, *self.inputs} if old.get(name) != self.inputs.get(name))
        why += [key for key in ("command", "runner") if before.get(key) != getattr(self, key)]
        return why


def stamp_path(phases: Phases) -> Path:
    return phases.session.state_dir / STAMP_FILE


def read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


_LOCK = threading.Lock()
"""One setup at a time (lanes share the environment)."""


def ensure(phases: Phases, n: int | None, root: Path, commit: str | None,
           cancel: threading.Event | None = None) -> tuple[list[str], RunOutcome] | None:
    """Run setup from ``root`` (the commit's snapshot) if the environment is not built from it; returns
    (why it ran, its outcome), or None when nothing had to run. Journals a ``setup`` record when
    ``n`` is an experiment (init journals its own once the session exists)."""
    s = phases.settings
    if not s.setup:
        return None
    with _LOCK:
        env_dir = phases.session.env_dir
        env_dir.mkdir(parents=True, exist_ok=True)
        inputs = input_hashes(root, s.setup_inputs)
        if s.target in inputs:
            raise ConfigError(f"setup_inputs ({s.source_of('setup_inputs')}) match the target {s.target}: the "
                              "agent's edit would rebuild the environment with the network; name other files")
        built = Built(inputs, s.setup, runner_identity(phases))
        why = built.changes(read_stamp(stamp_path(phases)), env_dir)
        if not why:
            return None
        log.info("setup.start", n=n, trigger=why)
        log_path = phases.session.run_dir("setup" if n is None else n) / "setup.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)
        spec = phases.spec(-1 if n is None else n, "setup", s.setup, log_path, commit, cancel, root)
        spec = dataclasses.replace(spec, budget=SETUP_BUDGET_S, grace=60.0)
        stamp_path(phases).unlink(missing_ok=True)  # from here the environment is what this setup leaves
        outcome = phases.runner.run(spec, lambda _handle: None)
        log.info("setup.end", n=n, cause=outcome.cause, wall_s=round(outcome.wall_s, 2))
        if outcome.ok:
            write_atomic(stamp_path(phases), json.dumps(dataclasses.asdict(built), sort_keys=True) + "\n")
        if n is not None:
            phases.journal.append(record(n, why, outcome))
        return why, outcome


def record(n: int | None, why: list[str], outcome: RunOutcome) -> dict[str, Any]:
    return {"type": "setup", "n": n, "trigger": why, "cause": outcome.cause, "wall_s": round(outcome.wall_s, 3)}


def runner_identity(phases: Phases) -> str:
    """The runner an environment was built for (a venv built in the image does not fit bwrap, and back)."""
    s = phases.settings
    return f"docker:{s.docker.image}" if s.runner == "docker" else "process"

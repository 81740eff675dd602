"""The notice of the process runner's limits: written by the daemon at its start, shown by ``status``.

Which enforcer this host gave (cgroup v2, v1, or the rlimit fallback), what it applies and what it does
not enforce, so an operator sees it without reading the daemon's log.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoresearch.runners.cgroups import Enforcer
from autoresearch.runners.enforcers import NO_PRLIMIT, Rlimits

if TYPE_CHECKING:
    from autoresearch.ops.config import ProcessSettings

NOTICE_FILE = "limits.json"


def notice(enforcer: Enforcer, settings: ProcessSettings) -> dict[str, Any]:
    """What the daemon says at start and ``status`` shows: the enforcer and what it does not enforce."""
    output = f"/output {settings.write_cap}" if settings.sandbox == "bwrap" else "/output measured after the run"
    applied = [f"RLIMIT_FSIZE={settings.write_cap}", f"/tmp {settings.tmpfs_size}", f"/dev/shm {settings.shm_size}",
               output]
    if isinstance(enforcer, Rlimits):
        applied.insert(0, f"RLIMIT_NPROC={settings.pids_limit}")
    else:
        applied[:0] = [f"memory {settings.memory}", f"pids {settings.pids_limit}"]
    if NO_PRLIMIT in enforcer.not_enforced:
        applied = [a for a in applied if not a.startswith("RLIMIT_")]
    return {"enforcer": enforcer.kind, "not_enforced": list(enforcer.not_enforced), "applied": applied,
            "reason": getattr(enforcer, "reason", ""), "at": time.time()}


def record_limits(state_dir: Path, runner: object) -> None:
    """At the daemon's start: the process runner's limits notice for ``status`` (another runner: none)."""
    path = state_dir / NOTICE_FILE
    describe = getattr(runner, "limits_notice", None)
    if describe is None:
        path.unlink(missing_ok=True)
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{NOTICE_FILE}.tmp"
    tmp.write_text(json.dumps(describe()))
    tmp.replace(path)


def read_notice(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / NOTICE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

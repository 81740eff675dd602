"""A stand-in daemon for the hostile tests: runs one experiment with the process runner, as whatever
user it was started as, then reaps orphans and prints the outcome as JSON.

    python -m tests.runners.hostile_harness CONFIG.json

CONFIG: dir, script, budget, grace, repo_id, mode; optionally settings (ProcessSettings fields, e.g. cgroups,
memory, pids_limit, write_cap) and cpus (the lane's cores, pinned by the cgroup's cpuset alone). The handle goes
to DIR/handle.json when the run starts; the outcome also carries the limits notice and the run groups left.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from autoresearch.runners.cgroups import RUN_PREFIX
from autoresearch.runners.lanes import Lane
from tests.runners.process_helpers import make_runner, make_spec


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    root = Path(cfg["dir"])
    runner = make_runner(cfg.get("mode", "bwrap"), repo_id=cfg["repo_id"], **cfg.get("settings", {}))
    if cfg.get("cpus"):
        runner.lane = Lane(0, cpus=tuple(cfg["cpus"]))
    spec = make_spec(root, cfg["script"], budget=cfg["budget"], grace=cfg["grace"], output_dir=root / "output")
    spec = dataclasses.replace(spec, env={**spec.env, "AUTORESEARCH_DAEMON_PID": str(os.getpid())})

    def on_started(handle: dict[str, object]) -> None:
        (root / "handle.tmp").write_text(json.dumps(handle))
        (root / "handle.tmp").rename(root / "handle.json")

    outcome = runner.run(spec, on_started)
    print(json.dumps({**dataclasses.asdict(outcome), "orphans": runner.reap_orphans(), "uid": os.getuid(),
                      "notice": runner.limits_notice(), "groups_left": groups_left(cfg)}))


def groups_left(cfg: dict[str, Any]) -> list[str]:
    """Run groups still there, down to the daemon's leaf under a hierarchy (there must be none after a run)."""
    if cfg.get("settings", {}).get("cgroups", "off") == "off":
        return []
    root = Path("/sys/fs/cgroup")
    patterns = (f"{RUN_PREFIX}*", f"*/{RUN_PREFIX}*", f"*/*/{RUN_PREFIX}*")
    return sorted(str(p) for pattern in patterns for p in root.glob(pattern) if p.is_dir())


if __name__ == "__main__":
    main()

"""A stand-in daemon for the hostile tests: runs one experiment with the process runner, as whatever
user it was started as, then reaps orphans and prints the outcome as JSON.

    python -m tests.runners.hostile_harness CONFIG.json

CONFIG: dir, script, budget, grace, repo_id, mode. The handle goes to DIR/handle.json when the run starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from tests.runners.process_helpers import make_runner, make_spec


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    root = Path(cfg["dir"])
    runner = make_runner(cfg.get("mode", "bwrap"), repo_id=cfg["repo_id"])
    spec = make_spec(root, cfg["script"], budget=cfg["budget"], grace=cfg["grace"], output_dir=root / "output")
    spec = dataclasses.replace(spec, env={**spec.env, "AUTORESEARCH_DAEMON_PID": str(os.getpid())})

    def on_started(handle: dict[str, object]) -> None:
        (root / "handle.tmp").write_text(json.dumps(handle))
        (root / "handle.tmp").rename(root / "handle.json")

    outcome = runner.run(spec, on_started)
    print(json.dumps({**dataclasses.asdict(outcome), "orphans": runner.reap_orphans(), "uid": os.getuid()}))


if __name__ == "__main__":
    main()

"""A daemon with two lanes (two process runners, one core each), for the kill -9 test:
``python -m tests.lanes_daemon REPO MAX_EXPERIMENTS``. (The CLI's lanes setting lands with the
runner side of lanes; this builds the same Loop directly.)"""

from __future__ import annotations

import sys
from pathlib import Path

from autoresearch.cli.commands import build_loop, instance_id, repo_id
from autoresearch.ops.logs import configure
from autoresearch.runners import runner_from_config
from autoresearch.runners.lanes import Lane


def main() -> int:
    repo, total = Path(sys.argv[1]), int(sys.argv[2])
    configure(stream=sys.stderr)
    loop = build_loop(repo, {"agent": "offline", "limits": {"max_experiments": total}})
    rid = repo_id(repo)
    loop.lanes = [(Lane(i, cpus=(i,)), runner_from_config(loop.settings, rid, instance_id())) for i in range(2)]
    return loop.run().exit_code


if __name__ == "__main__":
    sys.exit(main())

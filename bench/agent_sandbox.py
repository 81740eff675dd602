"""What the command agent's sandbox costs per proposal: start-to-exit of a trivial command, by network mode.

    python3 bench/agent_sandbox.py [--runs N] [--smoke]

``user`` is the default (its own network namespace, slirp4netns up before the command starts);
``host`` shares the host's network (the opt-in). Both drop every capability. Prints the median and
the 90th percentile in milliseconds; the difference is what user-mode networking adds. The last line,
``agent_sandbox_ms: host_median=X user_median=Y``, is for scripts. ``--smoke``: 2 runs each (CI).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Literal

from autoresearch.agents.sandbox import AgentJail
from autoresearch.ops.config import CommandAgentSettings


def measure(network: Literal["host", "user"], runs: int, base: Path) -> list[float]:
    jail = AgentJail.from_config(CommandAgentSettings(command="true", writable=[], network=network))
    tree, work = base / "tree", base / "work"
    tree.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)
    (work / "context.md").write_text("context\n")
    times = []
    with (base / "out.log").open("wb") as out:
        for _ in range(runs):
            t0 = time.perf_counter()
            code = jail.run("true", tree, work / "context.md", {}, out)
            times.append((time.perf_counter() - t0) * 1000)
            assert code == 0, (base / "out.log").read_text()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="2 runs per mode: the code paths, in seconds (CI)")
    args = parser.parse_args()
    runs = 2 if args.smoke else args.runs
    medians = {}
    with tempfile.TemporaryDirectory(prefix="ar-bench-agent-") as tmp:
        networks: tuple[Literal["host", "user"], ...] = ("host", "user")
        for network in networks:
            times = sorted(measure(network, runs, Path(tmp)))
            p90 = times[int(0.9 * (len(times) - 1))]
            medians[network] = statistics.median(times)
            print(f"network={network:5} runs={len(times)} median={medians[network]:.1f} ms p90={p90:.1f} ms")
    print(f"agent_sandbox_ms: host_median={medians['host']:.1f} user_median={medians['user']:.1f}")


if __name__ == "__main__":
    main()

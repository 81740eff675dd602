"""What the command agent's sandbox costs per proposal: start-to-exit of a trivial command, by network mode.

    python3 bench/agent_sandbox.py [--runs N]

``user`` is the default (its own network namespace, slirp4netns up before the command starts);
``host`` shares the host's network (the opt-in). Both drop every capability. Prints the median and
the 90th percentile in milliseconds; the difference is what user-mode networking adds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from autoresearch.agents.sandbox import AgentJail
from autoresearch.config import CommandAgentSettings


def measure(network: str, runs: int, base: Path) -> list[float]:
    jail = AgentJail.from_config(CommandAgentSettings(command="true", writable=[], network=network))  # type: ignore[arg-type]
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ar-bench-agent-") as tmp:
        for network in ("host", "user"):
            times = sorted(measure(network, args.runs, Path(tmp)))
            p90 = times[int(0.9 * (len(times) - 1))]
            print(f"network={network:5} runs={len(times)} median={statistics.median(times):.1f} ms p90={p90:.1f} ms")


if __name__ == "__main__":
    main()

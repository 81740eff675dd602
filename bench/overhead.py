"""Per-experiment overhead of the loop, per runner, and the GPU-busy fraction with a slow agent.

    python3 bench/overhead.py [--experiments N] [--budget S] [--agent-seconds A] [--no-docker] [--cgroups MODE]
                              [--smoke]

``--cgroups`` (off, auto, v2, v1; default off) is the process runner's ``process.cgroups``: ``off`` measures
the rlimit fallback; a cgroup mode gives every run its own cgroup, so run it only where the daemon owns
its cgroup (a systemd unit with Delegate=yes, or a container with its own cgroup namespace, as
tests/runners/test_limits_cgroups.py makes one), never on a shared host whose cgroups belong to others.

Runners, measured side by side in one run: ``bwrap`` (the process runner in its bubblewrap sandbox),
``process`` (the process runner unsandboxed, ``process.sandbox = "none"``) and ``docker``.

The training command sleeps exactly its budget and prints a metric, so everything else an
experiment costs (commit, start, teardown, judging, journal and ledger writes) is overhead:
``overhead = (recorded_at - proposed_at) - budget`` (the agent's time is before ``proposed_at``).
The busy fraction is training time / wall time of a session whose agent takes A seconds a proposal.

``--smoke`` (CI): 2 experiments of 0.5 s, an agent of 0.1 s. Docker is measured when an engine with the
runner image answers; with ``AUTORESEARCH_REQUIRE_DOCKER=1`` (CI) its absence is an error, not a skip.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from autoresearch.agents.base import Proposal, ProposalContext
from autoresearch.cli.commands import build_loop, init_repo
from autoresearch.journal.store import JournalState

TRAIN = """\
import os, time
STEP = 1
time.sleep(float(os.environ["AUTORESEARCH_TIME_BUDGET"]))
print("val_bpb: %.6f" % (1.0 + STEP * 1e-3))
"""


class SlowAgent:
    """Proposes a trivial variant after sleeping, standing in for an LLM's thinking time."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def propose(self, ctx: ProposalContext) -> Proposal:
        time.sleep(self.seconds)
        return Proposal(content=ctx.best_content.replace("STEP = ", f"STEP = {ctx.n} + 0 * "), description=f"v{ctx.n}")


def make_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}
    (root / "train.py").write_text(TRAIN)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return root


RUNNERS = {"bwrap": ("process", "bwrap"), "process": ("process", "none"), "docker": ("docker", "bwrap")}
"""Figure name -> (settings.runner, process.sandbox)."""


def session(root: Path, name: str, n: int, budget: float, agent_s: float, cgroups: str = "off",
            ) -> tuple[JournalState, float]:
    runner, sandbox = RUNNERS[name]
    repo = make_repo(root)
    init_repo(repo, "bench", {"budget": budget, "runner": runner, "metric": "val_bpb"})  # explicit runner
    process = {"sandbox": sandbox, "gpus": "none", "cgroups": cgroups}
    loop = build_loop(repo, {"limits": {"max_experiments": n}, "process": process})
    loop.agent = SlowAgent(agent_s)
    t0 = time.monotonic()
    loop.run()
    return loop.journal.load(), time.monotonic() - t0


def overheads(state: JournalState, budget: float) -> list[float]:
    out = []
    for exp in state.completed():
        start = dt.datetime.fromisoformat(str(exp.phase_at("proposed")))
        end = dt.datetime.fromisoformat(str(exp.phase_at("recorded")))
        out.append((end - start).total_seconds() - budget)
    return out


def kill_latency(root: Path, name: str, cgroups: str = "off") -> tuple[float, float]:
    """A script that ignores its budget: seconds from the stop signal to gone, and past the deadline."""
    from autoresearch.cli.commands import repo_id
    from autoresearch.ops.config import load_settings
    from autoresearch.runners import runner_from_config
    from autoresearch.runners.base import RunSpec

    runner_name, sandbox = RUNNERS[name]
    root.mkdir(parents=True)
    (root / "train.py").write_text("import time\nwhile True: time.sleep(0.1)\n")
    settings = load_settings(root, runner=runner_name, budget=1.0, grace=0.5,
                             process={"sandbox": sandbox, "gpus": "none", "cgroups": cgroups})
    runner = runner_from_config(settings, repo_id(root), "bench")
    spec = RunSpec(n=0, kind="train", command="python3 train.py", workdir=root, budget=1.0, grace=0.5,
                   env={"AUTORESEARCH_TIME_BUDGET": "1"}, log_path=root / "run.log", log_cap_bytes=1 << 20,
                   target="train.py", snapshot=root)  # the folder holds only the commit's files
    outcome = runner.run(spec, lambda _handle: None)
    assert outcome.cause == "timeout", outcome
    return float(outcome.kill_latency_s or 0.0), outcome.wall_s - spec.deadline_s


def docker_wanted(no_docker: bool) -> bool:
    """Whether to measure the docker runner: if its engine and image are there; under
    AUTORESEARCH_REQUIRE_DOCKER=1 (CI, as the tests) a missing one ends the bench with exit 1."""
    if no_docker:
        return False
    if docker_ready():
        return True
    if os.environ.get("AUTORESEARCH_REQUIRE_DOCKER") == "1":
        sys.exit("no Docker engine with autoresearch-runner:local (AUTORESEARCH_REQUIRE_DOCKER=1): "
                 "run .ci/docker-setup.sh")
    return False


def docker_ready() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.images.get("autoresearch-runner:local")
        return True
    except Exception:  # any failure means: no docker figure
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--agent-seconds", type=float, default=5.0)
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--cgroups", choices=["off", "auto", "v2", "v1"], default="off",
                        help="process.cgroups of the process runner's figures (see the module docstring)")
    parser.add_argument("--smoke", action="store_true", help="2 short experiments: the code paths, in seconds (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.experiments, args.budget, args.agent_seconds = 2, 0.5, 0.1
    from autoresearch.ops import logs

    logs.configure(level="error", stream=sys.stderr)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runners = ["bwrap", "process"] + (["docker"] if docker_wanted(args.no_docker) else [])
        for runner in runners:
            state, wall = session(Path(tmp) / runner, runner, args.experiments, args.budget, 0.0, args.cgroups)
            values = overheads(state, args.budget)
            print(f"{runner}: cgroups={args.cgroups} experiments={len(values)} budget_s={args.budget:g} "
                  f"overhead_mean_s={statistics.mean(values):.3f} overhead_median_s={statistics.median(values):.3f} "
                  f"overhead_max_s={max(values):.3f} session_wall_s={wall:.1f}")
            figures[runner] = statistics.mean(values)
            latency, late = kill_latency(Path(tmp) / f"kill-{runner}", runner, args.cgroups)
            print(f"{runner}: kill_latency_s={latency:.3f} (stop signal to gone) past_deadline_s={late:.3f}")
        state, wall = session(Path(tmp) / "busy", "bwrap", args.experiments, args.budget, args.agent_seconds,
                              args.cgroups)
        training = sum(e.wall_s for e in state.completed())
        print(f"busy (bwrap): experiments={len(state.completed())} agent_s={args.agent_seconds:g} "
              f"budget_s={args.budget:g} training_s={training:.1f} session_wall_s={wall:.1f}")
    print("overhead_per_experiment_s: " + " ".join(
        f"{name}={figures[name]:.3f}" if name in figures else f"{name}=n/a" for name in RUNNERS))
    print(f"busy_fraction: {training / wall:.3f}")


if __name__ == "__main__":
    main()

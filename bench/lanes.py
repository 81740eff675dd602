"""Lanes: experiments per hour with 1, 2, 4 and 8 lanes, and how busy each lane is with serial or
pipelined proposals.

    python3 bench/lanes.py [--budget S] [--per-lane K] [--lanes 1,2,4,8] [--smoke]

The real loop (``Loop`` with one pinned process runner per lane, as ``runners.lane_runners`` builds them)
drives a training command that sleeps exactly its budget, on 8 fake GPUs (``FakeGpu``: each lane's
runs get CUDA_VISIBLE_DEVICES of their own GPU). The agent sleeps A seconds per proposal.

- Throughput: experiments recorded after the baseline / the time from the baseline's row to the last
  row; A = budget/10, ``proposals.ahead = 1`` and ``proposals.concurrency`` = lanes. Scaling
  efficiency = throughput / (N x the 1-lane throughput).
- busy_fraction of a lane: over its whole cycles (a run, then the gap until its next run starts), the
  training time / the time from its first run's start to its last run's start (the pipeline's fill,
  the baseline and the session's end are not counted; needs 2+ runs per lane). Two lanes, each with
  its own agent conversation (``proposals.concurrency = 2``); serial = ``proposals.ahead = 0`` (a lane
  waits for its proposal), pipelined = ``proposals.ahead = 1``.

The last two lines are for scripts: ``scaling_efficiency: lanes=8 value=X`` and
``busy_fraction: serial=X pipelined=Y`` (Y: pipelined at A = budget/5, mean over the lanes).
``--smoke`` (CI): budget 0.5 s, 2 experiments per lane, 1 and 2 lanes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.agents.base import Proposal, ProposalContext
from autoresearch.cli.commands import init_repo, instance_id, repo_id
from autoresearch.coordinator.loop import Loop
from autoresearch.git.workspace import GitWorkspace
from autoresearch.journal.status import lane_of
from autoresearch.journal.store import Experiment, JournalState
from autoresearch.ops.sdnotify import Notifier
from autoresearch.runners import lane_runners
from autoresearch.runners.gpu import FakeGpu, GpuDevice
from autoresearch.sessions.session import load_session
from autoresearch.sessions.settings import load_session_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import make_repo

GPUS = FakeGpu([GpuDevice(i, f"GPU-fake-{i}", "Fake H100", 81_559.0, 81_000.0) for i in range(8)])


class SlowAgent:
    """A proposal after A seconds, each one new (a worse STEP: every experiment is a discard, so the
    branch never moves and no draft is ever rebased: the figures are the lanes' alone)."""

    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._count = 0
        self._lock = threading.Lock()

    def propose(self, ctx: ProposalContext) -> Proposal:
        time.sleep(self.seconds)
        with self._lock:
            self._count += 1
            k = self._count
        return Proposal(content=ctx.best_content.replace("STEP = 1", f"STEP = {k + 1}"), description=f"step {k + 1}")


@dataclass(frozen=True)
class Session:
    state: JournalState
    lanes: int
    budget: float

    def rows(self) -> list[Experiment]:
        return [e for e in self.state.completed() if not e.baseline]

    def per_hour(self) -> float:
        baseline = next(e for e in self.state.completed() if e.baseline)
        rows = self.rows()
        window = _at(rows[-1], "recorded") - _at(baseline, "recorded")
        return 3600.0 * len(rows) / window

    def busy(self) -> dict[int, float]:
        """Per lane, over whole cycles (a run and the gap before the next run starts): training seconds of
        all its runs but the last / (the last run's start - the first run's start)."""
        out = {}
        for lane in range(self.lanes):
            runs = sorted((e for e in self.rows() if lane_of(e) == lane), key=lambda e: _at(e, "running"))
            if len(runs) >= 2:
                out[lane] = sum(e.wall_s for e in runs[:-1]) / (_at(runs[-1], "running") - _at(runs[0], "running"))
        return out


def _at(exp: Experiment, phase: Any) -> float:
    return dt.datetime.fromisoformat(str(exp.phase_at(phase))).timestamp()


def session(root: Path, lanes: int, budget: float, agent_s: float, ahead: int, concurrency: int,
            per_lane: int) -> Session:
    repo = make_repo(root)
    init_repo(repo, "bench", {"budget": budget, "runner": "process", "metric": "val_bpb"})
    ws = GitWorkspace.open(repo)
    current = load_session(ws)
    # No repeats of the baseline: the noise estimate is a one-time cost at the start, not the lanes'.
    # The session's settings (init committed the budget on its branch), as the daemon reads them.
    settings = load_session_settings(ws, current.branch, lanes=lanes,
                                     limits={"max_experiments": 1 + lanes * per_lane},
                                     proposals={"ahead": ahead, "concurrency": concurrency}, noise={"repeats": 0})
    pinned = lane_runners(settings, repo_id(repo), instance_id(), gpu_probe=GPUS)
    agent = SlowAgent(agent_s)
    loop = Loop(settings=settings, session=current, workspace=ws, runner=pinned[0][1], agent=agent,
                notifier=Notifier(), lanes=pinned)
    loop.run()
    return Session(loop.journal.load(), lanes, budget)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=6.0)
    parser.add_argument("--per-lane", type=int, default=4, help="experiments per lane after the baseline")
    parser.add_argument("--lanes", default="1,2,4,8")
    parser.add_argument("--smoke", action="store_true", help="tiny sessions: the code paths, in seconds (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.budget, args.per_lane, args.lanes = 0.5, 2, "1,2"
    from autoresearch.ops import logs

    logs.configure(level="error", stream=sys.stderr)
    budget, k = args.budget, args.per_lane
    counts = [int(n) for n in args.lanes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"throughput: budget_s={budget:g} agent_s={budget / 10:g} experiments_per_lane={k} (fake GPUs)")
        print("| lanes | experiments/hour | scaling efficiency |")
        print("|---:|---:|---:|")
        base, efficiency = 0.0, 0.0
        for n in counts:
            s = session(Path(tmp) / f"lanes-{n}", n, budget, budget / 10, ahead=1, concurrency=n, per_lane=k)
            rate = s.per_hour()
            base = base or rate / n
            efficiency = rate / (n * base)
            print(f"| {n} | {rate:.0f} | {efficiency:.3f} |")
        busy: dict[tuple[str, float], float] = {}
        print(f"\nbusy_fraction per lane: 2 lanes, budget_s={budget:g}, experiments_per_lane={k}")
        print("| agent_s | loop | lane 0 | lane 1 | mean |")
        print("|---:|---|---:|---:|---:|")
        for agent_s in (budget / 5, budget / 2):
            for mode, ahead in (("serial", 0), ("pipelined", 1)):
                s = session(Path(tmp) / f"busy-{mode}-{agent_s:g}", 2, budget, agent_s, ahead=ahead, concurrency=2,
                            per_lane=k)
                lanes = s.busy()
                busy[(mode, agent_s)] = statistics.mean(lanes.values())
                cells = " | ".join(f"{lanes.get(i, 0.0):.3f}" for i in range(2))
                print(f"| {agent_s:g} | {mode} | {cells} | {busy[(mode, agent_s)]:.3f} |")
    print(f"scaling_efficiency: lanes={counts[-1]} value={efficiency:.3f}")
    print(f"busy_fraction: serial={busy[('serial', budget / 5)]:.3f} pipelined={busy[('pipelined', budget / 5)]:.3f}")


if __name__ == "__main__":
    main()

"""Slurm lanes against local ones: overhead per run, submit -> start and end -> record latency, and the
scaling efficiency of 2 lanes on a cluster with 2 (fake) GPUs.

    python3 bench/slurm.py [--budget S] [--per-lane K] [--poll S] [--smoke]

Needs a cluster that answers (``bash .ci/slurm-setup.sh start``: one node, 2 fake GPUs); without one it
exits 77 saying so (the bench smoke test's "missing here": a skip, a failure in CI). In one run:

- ``local``: the process runner in its bubblewrap sandbox, 1 lane (the reference);
- ``slurm``: ``runner = "slurm"`` (``slurm.inner = "bwrap"``, ``gres = "gpu:1"``), 1 lane, then 2 lanes.

The training command only sleeps for its budget (so CPU contention does not decide the figures) and
prints ``bench_start``/``bench_end`` (epoch seconds) around its sleep. Per run:
``overhead = (recorded_at - proposed_at) - budget``; ``submit_to_start = bench_start - submitted_at``
(the journaled handle: queueing, the job's start and its sandbox's); ``end_to_record = recorded_at -
bench_end`` (noticing the end, collecting the log, judging, the journal and ledger writes). Slurm's own
view of the queue, ``queued_s``, is printed beside. Scaling efficiency = 2-lane throughput / (2 x the
1-lane throughput), throughput being experiments after the baseline per hour of the rows' span.

The last line is for scripts: ``slurm: overhead_s=X local_overhead_s=Y submit_to_start_s=A end_to_record_s=B
scaling_efficiency=E``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from autoresearch.cli.commands import init_repo, instance_id, repo_id
from autoresearch.coordinator.loop import Loop
from autoresearch.errors import AutoresearchError
from autoresearch.git.workspace import GitWorkspace
from autoresearch.journal.store import Experiment, JournalState
from autoresearch.ops.config import load_settings
from autoresearch.ops.sdnotify import Notifier
from autoresearch.runners import lane_runners
from autoresearch.runners.slurm_ops import SlurmCommands
from autoresearch.sessions.session import load_session

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lanes import Session as LaneSession
from lanes import SlowAgent, _at

SLEEPER = """\
import os, time
STEP = 1
print("bench_start: %.6f" % time.time(), flush=True)
time.sleep(float(os.environ["AUTORESEARCH_TIME_BUDGET"]))
print("bench_end: %.6f" % time.time(), flush=True)
print("val_bpb: %.6f" % (1.0 + STEP * 1e-3))
"""


@dataclass(frozen=True)
class Run:
    overhead_s: float
    submit_to_start_s: float | None
    end_to_record_s: float | None
    queued_s: float | None


@dataclass(frozen=True)
class Session:
    state: JournalState
    runs_dir: Path
    budget: float
    seen_jobs: frozenset[str] = frozenset()
    """Every job id squeue listed while the session ran (this session's and anyone else's)."""

    def others(self) -> set[str]:
        """Jobs of someone else that were on the cluster meanwhile (they may have held the fake GPUs)."""
        ours = {str(e.running.handle.get("job_id")) for e in self.state.completed() if e.running is not None}
        return set(self.seen_jobs) - ours

    def runs(self) -> list[Run]:
        return [self._run(e) for e in self.state.completed()]

    def per_hour(self) -> float:
        return LaneSession(self.state, 1, self.budget).per_hour()  # lanes.py's throughput, the same figure

    def _run(self, exp: Experiment) -> Run:
        printed = _printed(self.runs_dir / str(exp.n) / "run.log")
        submitted = exp.running.handle.get("submitted_at") if exp.running is not None else None
        recorded = _at(exp, "recorded")
        return Run(overhead_s=recorded - _at(exp, "proposed") - self.budget,
                   submit_to_start_s=None if submitted is None or "bench_start" not in printed
                   else printed["bench_start"] - float(submitted),
                   end_to_record_s=recorded - printed["bench_end"] if "bench_end" in printed else None,
                   queued_s=getattr(exp.finished, "queued_s", None))


def _printed(log: Path) -> dict[str, float]:
    out = {}
    for line in log.read_text(errors="replace").splitlines() if log.exists() else []:
        key, _, value = line.partition(": ")
        if key in ("bench_start", "bench_end"):
            out[key] = float(value)
    return out


def research_repo(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(SLEEPER)
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return root


def session(root: Path, runner: str, lanes: int, budget: float, per_lane: int, poll_s: float) -> Session:
    repo = research_repo(root / "repo")
    shared = root / "shared"
    shared.mkdir()
    slurm = {"shared_dir": str(shared), "poll_s": poll_s, "gres": "gpu:1", "inner": "bwrap"}
    process = {"sandbox": "bwrap", "gpus": "none", "cgroups": "off"}
    os.environ["AUTORESEARCH_SLURM__SHARED_DIR"] = str(shared)  # init takes flags only; settings read it here
    init_repo(repo, "bench", {"budget": budget, "runner": runner, "metric": "val_bpb"})
    ws = GitWorkspace.open(repo)
    settings = load_settings(repo, budget=budget, runner=runner, metric="val_bpb", lanes=lanes,
                             limits={"max_experiments": 1 + lanes * per_lane}, noise={"repeats": 0},
                             proposals={"ahead": 1, "concurrency": lanes}, slurm=slurm, process=process)
    pinned = lane_runners(settings, repo_id(repo), instance_id())
    loop = Loop(settings=settings, session=load_session(ws), workspace=ws, runner=pinned[0][1], agent=SlowAgent(0.0),
                notifier=Notifier(), lanes=pinned)
    with watching_queue(runner == "slurm") as seen:
        loop.run()
    return Session(loop.journal.load(), ws.state_dir() / "runs", budget, frozenset(seen))


@contextlib.contextmanager
def watching_queue(enabled: bool) -> Iterator[set[str]]:
    """The job ids squeue lists, sampled every 0.5 s in a thread while the block runs."""
    seen: set[str] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
            seen.update(out.stdout.split())

    thread = threading.Thread(target=sample, daemon=True)
    if enabled:
        thread.start()
    try:
        yield seen
    finally:
        done.set()
        if enabled:
            thread.join(timeout=60)


def preflight() -> str | None:
    """Why this bench cannot run here, or None."""
    try:
        SlurmCommands(timeout_s=15).ping()
    except AutoresearchError as exc:
        return f"no Slurm cluster answers ({exc}); start one with `bash .ci/slurm-setup.sh start`"
    return None


def _mean(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--per-lane", type=int, default=4, help="experiments per lane after the baseline")
    parser.add_argument("--poll", type=float, default=0.5, help="slurm.poll_s")
    parser.add_argument("--smoke", action="store_true", help="3 s budget, 1 experiment per lane: the figures exist")
    args = parser.parse_args()
    budget, per_lane = (3.0, 1) if args.smoke else (args.budget, args.per_lane)
    problem = preflight()
    if problem is not None:
        print(f"bench/slurm.py: {problem}", file=sys.stderr)
        sys.exit(77)
    from autoresearch.ops import logs

    logs.configure(level="error", stream=sys.stderr)
    print(f"budget_s={budget:g} experiments_per_lane={per_lane} poll_s={args.poll:g} (sleeping target)")
    print("| runner | lanes | runs | overhead/run s | submit->start s | queued_s (Slurm) | end->record s | exp/hour |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    figures: dict[tuple[str, int], tuple[Session, list[Run]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for runner, lanes in (("process", 1), ("slurm", 1), ("slurm", 2)):
            s = session(Path(tmp) / f"{runner}-{lanes}", runner, lanes, budget, per_lane, args.poll)
            runs = s.runs()
            figures[(runner, lanes)] = (s, runs)
            name = "local bwrap" if runner == "process" else "slurm"
            print(f"| {name} | {lanes} | {len(runs)} | {_mean([r.overhead_s for r in runs]):.3f} | "
                  f"{_mean([r.submit_to_start_s for r in runs]):.3f} | {_mean([r.queued_s for r in runs]):.3f} | "
                  f"{_mean([r.end_to_record_s for r in runs]):.3f} | {s.per_hour():.0f} |")
    one, two = figures[("slurm", 1)], figures[("slurm", 2)]
    others = one[0].others() | two[0].others()
    if others:  # a shared cluster: another's job on a fake GPU queues ours, and the figures show it
        print(f"warning: {len(others)} job(s) of others ran meanwhile ({', '.join(sorted(others)[:5])}): "
              "the Slurm figures include waiting for them")
    efficiency = two[0].per_hour() / (2 * one[0].per_hour())
    print(f"slurm: overhead_s={_mean([r.overhead_s for r in one[1]]):.3f} "
          f"local_overhead_s={_mean([r.overhead_s for r in figures[('process', 1)][1]]):.3f} "
          f"submit_to_start_s={_mean([r.submit_to_start_s for r in one[1]]):.3f} "
          f"end_to_record_s={_mean([r.end_to_record_s for r in one[1]]):.3f} scaling_efficiency={efficiency:.3f}")


if __name__ == "__main__":
    main()

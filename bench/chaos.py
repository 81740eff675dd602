"""kill -9 the daemon at random instants, per runner, and count what a user would lose.

    python3 bench/chaos.py [--kills 50] [--experiments 60] [--budget 2] [--runners process,docker] [--smoke]

For each runner: a fresh research repo whose training sleeps a little and prints a metric; the
daemon (`autoresearch run`, a real subprocess) is started and SIGKILLed ``--kills`` times at random
instants (a fifth while it starts, the rest uniformly within budget + 1.5 s of its first journal record),
then run to ``--experiments`` recorded experiments. Printed per runner:
kills, rows (results.tsv), lost (rows the journal calls for, its recorded changes, missing from
results.tsv, or numbers skipped), doubled (an experiment recorded twice, or a row twice), orphans (training
processes or containers alive after the final exit), interrupted (runs a kill landed in), and the
resume time (daemon start to its first journal record, median and max over the restarts; n/a when
every kill came before it). Anything lost, doubled or orphaned, or a final exit other than 0, ends
the bench with exit 1 after the figures: that is the guarantee it measures.

``--smoke`` (CI): 2 kills, 2 experiments of 0.5 s, the process runner, and docker when an engine with
the runner image answers (required under ``AUTORESEARCH_REQUIRE_DOCKER=1``, as for the tests).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.journal import ledger
from autoresearch.journal.store import Journal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import docker_wanted

TRAIN = """\
import os
import time

LR = 0.5
WIDTH = 8

time.sleep(0.4)
print("val_bpb: %.6f" % ((LR - 0.1) ** 2 + abs(WIDTH - 12) * 0.01 + 1.0))
"""
STARTUP_KILLS = 0.2
"""The share of kills that land while the daemon starts (before its first journal record)."""
RESUME_LIMIT_S = 120.0
ENV = {**os.environ, "GIT_AUTHOR_NAME": "c", "GIT_AUTHOR_EMAIL": "c@c", "GIT_COMMITTER_NAME": "c",
       "GIT_COMMITTER_EMAIL": "c@c"}


def make_repo(root: Path, runner: str, budget: float, token: str) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "chaos"]):
        subprocess.run(["git", *args], cwd=root, env=ENV, check=True)
    # The token in the command line is how orphans are found, whichever sandbox ran them.
    init = subprocess.run([sys.executable, "-m", "autoresearch", "init", str(root), "--tag", "chaos", "--runner",
                           runner, "--budget", f"{budget:g}", "--metric", "val_bpb", "--run",
                           f"python3 train.py {token}"], env=ENV, capture_output=True, text=True, check=False)
    if init.returncode != 0:
        sys.exit(f"init failed for {runner}: {init.stderr}")
    return root


def daemon(repo: Path, total: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "autoresearch", "run", str(repo), "--max-experiments", str(total)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def journal_size(repo: Path) -> int:
    path = repo / ".git/autoresearch/journal.jsonl"
    return path.stat().st_size if path.exists() else 0


def resume_seconds(repo: Path, proc: subprocess.Popen[bytes], started: float, size: int, limit: float) -> float | None:
    """Seconds until the restarted daemon appends its first journal record (None: killed before it did)."""
    while time.monotonic() - started < limit:
        if journal_size(repo) > size:
            return time.monotonic() - started
        if proc.poll() is not None:
            return None
        time.sleep(0.01)
    return None


def orphans(token: str) -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state != "Z":
            count += 1
    return count


def chaos(root: Path, runner: str, kills: int, total: int, budget: float, seed: int) -> dict[str, object]:
    token = f"chaos-{secrets.token_hex(4)}"
    repo = make_repo(root / runner, runner, budget, token)
    rng = random.Random(seed)
    resumes: list[float] = []
    for _ in range(kills):
        size, started = journal_size(repo), time.monotonic()
        proc = daemon(repo, total)
        if resumes and rng.random() < STARTUP_KILLS:  # during its start, as long as the restarts so far took
            deadline = rng.uniform(0.1, statistics.median(resumes))
            resumed = resume_seconds(repo, proc, started, size, deadline)
        else:
            # While it works: drawn from its first record on, since the start's length grows with the load
            # (drawn from the start, on a busy 2-core machine every kill landed before the daemon resumed).
            resumed = resume_seconds(repo, proc, started, size, RESUME_LIMIT_S)
            deadline = (resumed or time.monotonic() - started) + rng.uniform(0.0, budget + 1.5)
        if resumed is not None:
            resumes.append(resumed)
        time.sleep(max(0.0, deadline - (time.monotonic() - started)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = daemon(repo, total)
    code = final.wait(timeout=3600)
    time.sleep(1.0)  # let the kernel finish tearing down what the last run left
    return {"runner": runner, "exit": code, **count(repo, token), "resume": resumes}


def count(repo: Path, token: str) -> dict[str, int]:
    recorded: collections.Counter[int] = collections.Counter()
    interrupted = 0
    for line in (repo / ".git/autoresearch/journal.jsonl").read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("phase") == "recorded":
            recorded[int(rec["n"])] += 1
        if rec.get("phase") == "finished" and rec.get("cause") == "interrupted":
            interrupted += 1
    rows = (repo / "results.tsv").read_text().splitlines()[1:]
    commits = [row.split("\t")[0] for row in rows]
    numbers = sorted(recorded)
    skipped = (numbers[-1] + 1 - len(numbers)) if numbers else 0
    # A change's row folds its repeats and confirmations (the baseline's 3 runs are one row): the rows the
    # journal calls for are the ledger's, not one per recorded experiment.
    expected = len(ledger.rows(Journal(repo / ".git/autoresearch/journal.jsonl").load()))
    return {
        "rows": len(rows),
        "recorded": len(recorded),
        "lost": max(0, expected - len(rows)) + skipped,
        "doubled": sum(c - 1 for c in recorded.values() if c > 1) + max(0, len(rows) - expected),
        "distinct_commits": len(set(commits)),
        "orphans": orphans(token) + containers(repo),
        "interrupted": interrupted,
    }


def containers(repo: Path) -> int:
    try:
        import docker

        from autoresearch.cli.commands import repo_id

        client = docker.from_env(timeout=10)
        return len(client.containers.list(all=True, filters={"label": f"autoresearch.repo={repo_id(repo)}"}))
    except Exception:  # no engine: no containers to count
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--experiments", type=int, default=60)
    parser.add_argument("--budget", type=float, default=2.0)
    parser.add_argument("--runners", default="process,docker")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--smoke", action="store_true", help="2 kills, 2 experiments: the code paths (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.kills, args.experiments, args.budget = 2, 2, 0.5
        args.runners = "process,docker" if docker_wanted(no_docker=False) else "process"
    broken = []
    with tempfile.TemporaryDirectory() as tmp:
        for runner in args.runners.split(","):
            t0 = time.monotonic()
            out = chaos(Path(tmp), runner, args.kills, args.experiments, args.budget, args.seed)
            resume = out.pop("resume")
            assert isinstance(resume, list)
            med = f"{statistics.median(resume):.2f}" if resume else "n/a"
            worst = f"{max(resume):.2f}" if resume else "n/a"
            print(f"{runner}: kills={args.kills} " + " ".join(f"{k}={v}" for k, v in out.items() if k != "runner")
                  + f" resume_median_s={med} resume_max_s={worst} wall_s={time.monotonic() - t0:.0f}")
            broken += [f"{runner}: {key}={out[key]}" for key in ("exit", "lost", "doubled", "orphans") if out[key]]
    if broken:
        sys.exit("chaos: what a user would lose: " + ", ".join(broken))


if __name__ == "__main__":
    main()

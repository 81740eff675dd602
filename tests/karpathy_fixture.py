"""A karpathy/autoresearch-like uv project, for tests: the same mechanics on CPU in a second.

- a uv project (``pyproject.toml`` + committed ``uv.lock``) with one small pure-Python dependency the
  daemon's environment lacks (termcolor), so only the repo's own environment can run it;
- ``prepare.py`` (read-only for the agent) writes its data under ``~/.cache/kfix`` and a stand-in hub
  download under ``$HF_HOME``, as karpathy's writes shards and the kernels cache;
- ``train.py`` (the target) reads both, writes a compile cache under ``~`` at run time, and prints
  karpathy's summary block;
- program.md's commands: ``uv sync`` (setup), ``uv run prepare.py``, ``uv run train.py``.

``make_karpathy_uv(path)`` builds the repo (one commit); ``init_args(repo, runner)`` is its init line;
``karpathy_session(path, runner)`` builds, inits and runs it (6 experiments, the offline agent).
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import cli, git

LOCK = Path(__file__).parent / "data" / "karpathy_uv" / "uv.lock"
DEPENDENCY = "termcolor"
PYPROJECT = '''\
[project]
name = "kfix"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = ["termcolor==2.4.0"]
'''

PREPARE = '''\
"""Stand-in for karpathy's prepare.py: data under ~/.cache, a hub download, the fixed constants."""
import json
import os
from pathlib import Path

TIME_BUDGET = 300
DATA = Path(os.path.expanduser("~")) / ".cache" / "kfix"
HUB = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub" / "models--kfix--kernels"


def evaluate_bpb(width, lr, warmup, scale):
    return scale * (1.0 + abs(width - 48) / 400 + (lr - 0.02) ** 2 * 20 + warmup * 0.05)


if __name__ == "__main__":
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "shard_00000.json").write_text(json.dumps({"scale": 1.0}))
    HUB.mkdir(parents=True, exist_ok=True)
    (HUB / "kernel.txt").write_text("flash-attention stand-in")
    print(f"wrote {DATA} and {HUB}")
'''

TRAIN = '''\
"""Stand-in for karpathy's train.py: constants the agent edits, data and a hub cache from prepare,
a compile cache under ~ at run time, and the same summary block."""
import json
import os
import time
from pathlib import Path

import termcolor  # only the repo's environment has it

from prepare import DATA, HUB, evaluate_bpb

WIDTH = 64
LEARNING_RATE = 0.04
WARMUP_RATIO = 0.1

t_start = time.time()
assert os.environ.get("HF_HUB_OFFLINE") == "1", "runs must find the hub cache offline"
kernel = (HUB / "kernel.txt").read_text()  # the hub download made by prepare, found offline
scale = json.loads((DATA / "shard_00000.json").read_text())["scale"]
compile_cache = Path.home() / ".cache" / "kfix-compile"
fresh = not compile_cache.exists()  # a per-run layer: never left by an earlier run
compile_cache.mkdir(parents=True, exist_ok=True)
(compile_cache / "graph.bin").write_bytes(os.urandom(64))
try:
    with open(DATA / "shard_00000.json", "a") as fh:
        fh.write("tampered")
    home_data = "writable"
except OSError:
    home_data = "read-only"
print(termcolor.colored("training", "green"), f"compile cache fresh: {fresh}; home data {home_data}")
val_bpb = evaluate_bpb(WIDTH, LEARNING_RATE, WARMUP_RATIO, scale)
total_training_time = time.time() - t_start

print("---")
print(f"val_bpb:          {val_bpb:.6f}")
print(f"training_seconds: {total_training_time:.1f}")
print(f"total_seconds:    {time.time() - t_start:.1f}")
print(f"peak_vram_mb:     {2048.0:.1f}")
print(f"mfu_percent:      {0.00:.2f}")
print(f"total_tokens_M:   {1.0:.1f}")
print(f"num_steps:        {10}")
print(f"num_params_M:     {0.1:.1f}")
print(f"depth:            {4}")
'''

PROGRAM = """# autoresearch (fixture)

Setup: `uv sync`, then `uv run prepare.py` once. Each experiment: `uv run train.py > run.log 2>&1`.
"""

FILES = {
    "pyproject.toml": PYPROJECT,
    "prepare.py": PREPARE,
    "train.py": TRAIN,
    "program.md": PROGRAM,
    ".gitignore": "__pycache__/\n.venv/\nresults.tsv\n",
}


def make_karpathy_uv(path: Path) -> Path:
    """The fixture repo at ``path`` (a fresh git repo on master, one commit)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "master")
    for name, text in FILES.items():
        (path / name).write_text(text)
    (path / "uv.lock").write_text(LOCK.read_text())
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial commit")
    return path


def init_args(repo: Path, runner: str, tag: str = "kfix", budget: float = 30) -> list[str]:
    """``autoresearch init`` for the fixture, as a karpathy user would write it."""
    return ["init", str(repo), "--tag", tag, "--setup", "uv sync", "--prepare", "uv run prepare.py",
            "--run", "uv run train.py", "--readonly", "prepare.py", "--metric", "val_bpb",
            "--budget", str(budget), "--runner", runner]


def karpathy_session(path: Path, runner: str, experiments: int = 6) -> Path:
    """The fixture at ``path``, initialised for ``runner`` and run for ``experiments`` with the offline agent."""
    repo = make_karpathy_uv(path)
    init = cli(*init_args(repo, runner), timeout=600)
    assert init.returncode == 0, init.stdout + init.stderr
    run = cli("run", str(repo), "--max-experiments", str(experiments), timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return repo

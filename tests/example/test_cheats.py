"""Printed cheats against the example with its trusted evaluator: a command agent swaps in each one,
and none is kept. Training is one step (a tiny budget) on a pinned seed, so every cheat trains the
very model the baseline trained and only the printed number differs: the evaluated metric ties, and
a tie is never a keep (none of the cheats is shorter)."""

from __future__ import annotations

import json
import os
import pickle
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from autoresearch.journal.ledger import parse_results
from tests.conftest import cli, git
from tests.example.test_safe_export import MODEL, Marker, Tiny, edit_json, rewrite, safe_export

torch = pytest.importorskip("torch")

HONEST = '    print(f"val_bpb:          {val_bpb:.6f}")\n'
EVALUATE = "    val_bpb = evaluate_bpb(model, seq_len, device)\n"
CHEATS = {
    "fake line": (HONEST, '    print("val_bpb: 0.0001")\n'),
    "stderr only": (HONEST, '    print("val_bpb: 0.0001", file=sys.stderr)\n'),
    "late lower line": (HONEST, HONEST + '    print("val_bpb: 0.5")\n'),
    "tiny": (HONEST, '    print("val_bpb: 1e-300")\n'),
    "huge negative": (HONEST, '    print("val_bpb: -1e308")\n'),
    "monkeypatched evaluation": (EVALUATE, "    import prepare\n    prepare.evaluate_bpb = lambda *a, **k: 0.0001\n"
                                 "    val_bpb = prepare.evaluate_bpb(model, seq_len, device)\n"),
    "train-split evaluation": (EVALUATE, "    import prepare\n    real = prepare._read_split\n"
                               "    prepare._read_split = lambda name: real('train')\n" + EVALUATE),
}

AGENT = r"""
import json, sys
from pathlib import Path
cheats = json.loads(Path(sys.argv[1]).read_text())
counter = Path(sys.argv[1] + ".next")
i = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(i + 1))
name, (old, new) = list(cheats.items())[i % len(cheats)]
target = Path(sys.argv[2])
text = target.read_text()
assert old in text, name
target.write_text(text.replace(old, new, 1))
Path(".autoresearch-description").write_text("cheat: " + name + "\n")
"""


def cheating_agent(tmp_path: Path, cheats: dict[str, tuple[str, str]], budget: str) -> dict[str, str]:
    """The daemon's environment for a command agent that applies one cheat per experiment, in order (the
    budget is a measured key: init pins it, so it is given to init and run alike)."""
    agent = tmp_path / "agent"  # the command agent runs jailed: this folder is its one writable mount
    agent.mkdir()
    (agent / "cheats.json").write_text(json.dumps(cheats))
    (agent / "agent.py").write_text(AGENT)
    return {"AUTORESEARCH_CACHE_DIR": str(tmp_path / "cache"), "AUTORESEARCH_EVAL_DATA": str(tmp_path / "eval"),
            "AUTORESEARCH_NOISE__REPEATS": "0", "AUTORESEARCH_AGENT": "command", "AUTORESEARCH_BUDGET": budget,
            "AUTORESEARCH_COMMAND_AGENT__COMMAND": f"{sys.executable} {agent / 'agent.py'} "
                                                   f"{agent / 'cheats.json'} {{target}}",
            "AUTORESEARCH_COMMAND_AGENT__WRITABLE": json.dumps([str(agent)])}


@pytest.mark.slow
def test_no_printed_cheat_is_kept(tmp_path: Path) -> None:
    repo = tmp_path / "example"
    assert cli("example", str(repo)).returncode == 0
    train = repo / "train.py"
    seed_line = 'seed = int(os.environ.get("AUTORESEARCH_SEED", "0"))'
    assert seed_line in train.read_text()
    train.write_text(train.read_text().replace(seed_line, "seed = 0"))  # the daemon varies it per run
    git(repo, "commit", "-qam", "pin the seed")
    env = cheating_agent(tmp_path, CHEATS, budget="0.001")
    init = cli("init", str(repo), "--tag", "cheats", env=env, timeout=600)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "eval" / "eval.bin").exists() and not (tmp_path / "cache" / "eval.bin").exists()
    result = cli("run", str(repo), "--max-experiments", str(1 + len(CHEATS)), "--budget", "0.001", "--grace", "300",
                 env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = parse_results((repo / "results.tsv").read_text())
    assert [r["description"].split(" [")[0] for r in rows[1:]] == [f"cheat: {name}" for name in CHEATS]
    assert rows[0]["status"] == "keep"
    assert [r["status"] for r in rows[1:]] == ["discard"] * len(CHEATS), rows
    assert all(r["val_bpb"] == rows[0]["val_bpb"] for r in rows[1:])  # the evaluator's number, not the print
    assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "refs/autoresearch/cheats/0")
    records = [json.loads(line) for line in (repo / ".git/autoresearch/journal.jsonl").read_text().splitlines()]
    evaluated = {r["n"]: r for r in records if r.get("phase") == "evaluated"}
    assert len(evaluated) == 1 + len(CHEATS)
    flagged = {n for n, r in evaluated.items() if r.get("claim_flag")}
    assert flagged == {1, 3, 4, 5, 6}  # fake, late lower, tiny, huge negative, monkeypatched: claims far off
    assert evaluated[2].get("claim_gap") is None  # stderr only: nothing claimed on stdout


# The red team's cases against the evaluator itself (issue 18, findings 1 and 2), run as the daemon runs
# it: evaluate.py from the example's files, on an output folder a hostile run wrote.
EXAMPLE = Path(__file__).resolve().parents[2] / "daemon" / "autoresearch" / "example"
SEQ = 16


def _peek(logits: Any, idx: Any, rows: Any, upto: int) -> Any:
    """Logits that know the next byte (idx[:, t+1]) at positions t < upto of the given rows."""
    import torch.nn.functional as F

    nxt = F.one_hot(idx[:, 1 : upto + 1], 256).float() * 30.0 * rows
    return torch.cat([logits[:, :upto] + nxt, logits[:, upto:]], dim=1)


class PeekFirstHalf(Tiny):
    """Peeks at byte t+1 everywhere but the half the old check perturbed: 0.08 bpb, kept."""

    def forward(self, idx: Any) -> Any:
        return _peek(super().forward(idx), idx, 1.0, SEQ // 2)


class PeekAtTheCut(Tiny):
    """Peeks at byte t+1 at every position: caught only by a check that cuts every position."""

    def forward(self, idx: Any) -> Any:
        return _peek(super().forward(idx), idx, 1.0, SEQ - 1)


class PeekNextRow(Tiny):
    """Row r's last prediction reads row r+1's first byte: the next window's, when windows are batched in order."""

    def forward(self, idx: Any) -> Any:
        import torch.nn.functional as F

        logits = super().forward(idx)
        nxt = F.one_hot(torch.roll(idx[:, :1], -1, 0), 256).float() * 30.0
        return torch.cat([logits[:, :-1], logits[:, -1:] + nxt], dim=1)


class PeekInRowZero(Tiny):
    """Peeks at byte t+1 everywhere, but only in the first row of each batch."""

    def forward(self, idx: Any) -> Any:
        rows = (torch.arange(idx.shape[0]) == 0).float()[:, None, None]
        return _peek(super().forward(idx), idx, rows, SEQ - 1)


def evaluate_py(tmp_path: Path, output: Path) -> subprocess.CompletedProcess[str]:
    """Run the example's evaluate.py on output, against a held-out text in tmp_path/eval."""
    eval_data = tmp_path / "eval"
    eval_data.mkdir(exist_ok=True)
    rng = random.Random(1)
    (eval_data / "eval.bin").write_bytes(bytes(rng.choice(b"def return self, if\n") for _ in range(49153)))
    env = {**os.environ, "AUTORESEARCH_OUTPUT": str(output), "AUTORESEARCH_EVAL_DATA": str(eval_data),
           "AUTORESEARCH_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(EXAMPLE / "evaluate.py")], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def exported(tmp_path: Path, module: Any) -> Path:
    output = tmp_path / "output"
    output.mkdir()
    module.eval()
    program = torch.export.export(module, (torch.zeros(64, SEQ, dtype=torch.long),))
    safe_export.save(program, str(output / "model.pt2"))
    return output


def test_the_evaluator_scores_an_honest_model(tmp_path: Path) -> None:
    result = evaluate_py(tmp_path, exported(tmp_path, Tiny()))
    assert result.returncode == 0, result.stderr
    assert 0 < float(result.stdout.split("val_bpb:")[1]) < 20


@pytest.mark.parametrize("cheat", [PeekFirstHalf, PeekAtTheCut, PeekNextRow, PeekInRowZero])
def test_peeking_anywhere_is_not_causal(tmp_path: Path, cheat: type) -> None:
    result = evaluate_py(tmp_path, exported(tmp_path, cheat()))
    assert result.returncode != 0 and "val_bpb" not in result.stdout
    assert "model is not causal" in result.stderr, result.stderr


def test_the_evaluator_runs_no_pickle_and_no_file_read(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    output = exported(tmp_path, Tiny())
    model = output / "model.pt2"
    rewrite(model, lambda e: e.update({"data/sample_inputs/model.pt": pickle.dumps(Marker(marker))}))
    result = evaluate_py(tmp_path, output)
    assert result.returncode != 0 and "refused" in result.stderr and "val_bpb" not in result.stdout
    assert not marker.exists()

    def read_eval(doc: Any) -> None:
        doc["graph_module"]["graph"]["nodes"].insert(0, {
            "target": "torch.ops.aten.from_file.default", "name": "leak", "metadata": {},
            "inputs": [{"name": "filename", "arg": {"as_string": str(tmp_path / "eval" / "eval.bin")}, "kind": 1}],
            "outputs": [{"as_tensor": {"name": "leak"}}]})
    model.unlink()
    safe_export.save(torch.export.export(Tiny().eval(), (torch.zeros(64, SEQ, dtype=torch.long),)), str(model))
    result = evaluate_py(tmp_path, rewrite(model, edit_json(MODEL, read_eval)).parent)
    assert result.returncode != 0 and "from_file.default is not allowed" in result.stderr


@pytest.mark.slow
def test_the_held_out_text_cannot_be_rebuilt_from_what_training_reads(tmp_path: Path) -> None:
    """Two prepares over one cache: the same public train/val, different held-out texts; the sampler
    training can rebuild from train.bin and prepare.py reproduces val.bin, not eval.bin."""
    env = {**os.environ, "AUTORESEARCH_CACHE": str(tmp_path / "cache")}
    for name in ("eval1", "eval2"):
        (tmp_path / "cache").mkdir(exist_ok=True)
        for stale in (tmp_path / "cache").iterdir():  # a fresh cache: prepare does nothing when cached
            stale.unlink()
        run = subprocess.run([sys.executable, str(EXAMPLE / "prepare.py")], env={
            **env, "AUTORESEARCH_EVAL_DATA": str(tmp_path / name)}, capture_output=True, text=True, timeout=600,
            check=False)
        assert run.returncode == 0, run.stderr
        assert "seed" not in (tmp_path / "cache" / "meta.json").read_text()
    held = [(tmp_path / n / "eval.bin").read_bytes() for n in ("eval1", "eval2")]
    assert held[0] != held[1]
    sys.path.insert(0, str(EXAMPLE))
    import prepare

    train, val = ((tmp_path / "cache" / f"{s}.bin").read_bytes() for s in ("train", "val"))
    sampler = prepare.NGramSampler(train[: prepare.FIT_BYTES])
    assert sampler.sample(len(val), prepare.PUBLIC_SEED)[0] == val  # what a run can rebuild
    rng = random.Random(0)
    for text in held:
        assert text != val and len(text) == prepare.EVAL_BYTES + 1
        for start in (rng.randrange(len(text) - 48) for _ in range(200)):
            assert text[start : start + 48] not in train  # not copied from any file a run reads
        meta = json.loads((tmp_path / "eval1" / "meta.json").read_text())
        assert 1.2 < meta["oracle_bpb"] < 2.5  # the floor: the sampler's own bits per byte


EXPORT = "    program = torch.export.export(model.float().cpu(), (example,))\n"
SAVE = '    safe_export.save(program, os.path.join(output, "model.pt2"))\n'
PEEK = """    class Peek(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m
        def forward(self, idx):
            logits, half = self.m(idx), idx.shape[1] // 2
            nxt = F.one_hot(idx[:, 1 : half + 1], VOCAB_SIZE).float() * 30.0
            return torch.cat([logits[:, :half] + nxt, logits[:, half:]], dim=1)
    program = torch.export.export(Peek(model.float().cpu()), (example,))
"""
FROM_FILE = SAVE + """    import json, zipfile
    path = os.path.join(output, "model.pt2")
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    name = next(n for n in entries if n.endswith("models/model.json"))
    doc = json.loads(entries[name])
    doc["graph_module"]["graph"]["nodes"].insert(0, {
        "target": "torch.ops.aten.from_file.default", "name": "leak", "metadata": {},
        "inputs": [{"name": "filename", "arg": {"as_string": "/eval/eval.bin"}, "kind": 1}],
        "outputs": [{"as_tensor": {"name": "leak"}}]})
    entries[name] = json.dumps(doc).encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in entries.items():
            z.writestr(n, data)
"""
EVALUATOR_CHEATS = {
    "pickled sample inputs": (SAVE, '    torch.export.save(program, os.path.join(output, "model.pt2"))\n'),
    "peek outside the perturbed half": (EXPORT, PEEK),
    "from_file reads the eval data": (SAVE, FROM_FILE),
}


@pytest.mark.slow
def test_no_evaluator_cheat_is_kept(tmp_path: Path) -> None:
    """The red team's archives, written by train.py under the daemon: each evaluation fails (cause eval:...)."""
    repo = tmp_path / "example"
    assert cli("example", str(repo)).returncode == 0
    env = cheating_agent(tmp_path, EVALUATOR_CHEATS, budget="0.5")
    assert cli("init", str(repo), "--tag", "evalcheats", env=env, timeout=600).returncode == 0
    result = cli("run", str(repo), "--max-experiments", str(1 + len(EVALUATOR_CHEATS)), "--budget", "0.5",
                 "--grace", "300", env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = parse_results((repo / "results.tsv").read_text())
    assert [r["description"].split(" [")[0] for r in rows[1:]] == [f"cheat: {n}" for n in EVALUATOR_CHEATS]
    assert rows[0]["status"] == "keep" and all(r["status"] != "keep" for r in rows[1:]), rows
    records = [json.loads(line) for line in (repo / ".git/autoresearch/journal.jsonl").read_text().splitlines()]
    evaluated = {r["n"]: r for r in records if r.get("phase") == "evaluated"}
    assert evaluated[0]["eval_cause"] == "ok"
    assert all(evaluated[n]["cause"].startswith("eval:") and evaluated[n]["metric"] is None
               for n in range(1, 1 + len(EVALUATOR_CHEATS))), evaluated
    logs = [(repo / f".git/autoresearch/runs/{n}/evaluate.log").read_text() for n in (1, 2, 3)]
    assert "refused" in logs[0] and "sample_inputs" in logs[0]
    assert "model is not causal" in logs[1]
    assert "from_file.default is not allowed" in logs[2]
    assert git(repo, "rev-parse", "HEAD") == git(repo, "rev-parse", "refs/autoresearch/evalcheats/0")


@pytest.mark.parametrize(("n_windows", "batch"), [(1, 4), (2, 64), (5, 4), (384, 64), (385, 64), (10, 3)])
def test_windows_that_touch_are_never_in_one_call(n_windows: int, batch: int) -> None:
    import evaluate

    calls = evaluate.batches(n_windows, batch)
    assert all(len(c) == batch for c in calls)
    assert sorted({w for c in calls for w in c}) == list(range(n_windows))  # every window, once per call
    where = {w: i for i, c in enumerate(calls) for w in c}
    assert all(where[w] != where[w + 1] for w in range(n_windows - 1))


def test_a_model_file_that_links_to_the_eval_data_is_not_followed(tmp_path: Path) -> None:
    output = tmp_path / "output"
    output.mkdir()
    (output / "model.pt2").symlink_to(tmp_path / "eval" / "eval.bin")
    result = evaluate_py(tmp_path, output)
    assert result.returncode != 0 and "not a plain file" in result.stderr and "val_bpb" not in result.stdout

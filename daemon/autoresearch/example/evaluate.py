"""The trusted evaluation of the example. READ-ONLY for the agent, and no code of train.py runs here.

train.py saves its model to $AUTORESEARCH_OUTPUT/model.pt2 as a torch.export program: a graph of
tensor operations and the weights. This script runs in a fresh sandbox, where the training run's
output is read-only and the held-out text ($AUTORESEARCH_EVAL_DATA, sampled by prepare.py with a
secret seed, never visible to training) is mounted, and prints the metric that decides:

    val_bpb: <bits per byte on the held-out text>

The archive is read as data by safe_export.load (JSON graph and raw tensors; a pickle, an object or
an operator outside its allow-list of pure tensor ops refuses it), and the graph runs on tensors
this script made: the model gets no file and no path. The text is cut into windows of the model's
context length; every target byte is scored once, here, from the logits. Windows that touch are
never in the same batch, so no row can read another row's targets. The model must be causal (else
no score): with each row of a batch cut at its own random position (every position is cut at least
once), its later bytes changed, moved to another row among other text, the log-probabilities up to
the cut must not change (CausalCheck).
"""

from __future__ import annotations

import math
import os
import random
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from prepare import VOCAB_SIZE, eval_dir, eval_text
from safe_export import Program, UnsafeProgram, load

MODEL_FILE = "model.pt2"
CAUSAL_TOLERANCE = 1e-3  # nats, on log-probabilities: a peek can gain no more than this per byte


def batches(n_windows: int, batch: int) -> list[list[int]]:
    """Window indices per model call: strided, so windows i and i+1 never share a call."""
    calls = max(2, math.ceil(n_windows / batch))
    groups = [list(range(c, n_windows, calls)) for c in range(calls)]
    return [g + [g[-1]] * (batch - len(g)) for g in groups if g]  # the program's batch size is fixed


def windows(n_targets: int, seq_len: int) -> tuple[list[int], list[int]]:
    """Window starts, and for each the first target position no earlier window scored."""
    starts = list(range(0, n_targets - seq_len + 1, seq_len))
    if starts[-1] + seq_len < n_targets:
        starts.append(n_targets - seq_len)
    return starts, [0] + [s + seq_len for s in starts[:-1]]


def logprobs(model: Program, x: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the next byte, (batch, seq_len, VOCAB_SIZE); finite logits or an error."""
    logits = model(x)
    expected = (*x.shape, VOCAB_SIZE)
    if tuple(logits.shape) != expected:
        raise ValueError(f"model returned {tuple(logits.shape)}, expected {expected}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("model returned non-finite logits")
    return F.log_softmax(logits.float(), dim=-1)


class CausalCheck:
    """Raise unless each prediction depends only on the bytes up to it in its own row.

    Against a batch x already scored: row r is cut at its own random position p (every position is
    cut in some row, over ceil((seq_len - 1) / batch) batches), moved to a random other row of a
    second batch, with bytes p+1.. changed and every other row other text; its log-probabilities
    at positions ..p must not move. The evaluation's own first batches serve as x (the model cannot
    tell them from other windows of the text), so the check costs one extra call per batch of cuts.
    """

    def __init__(self, model: Program, text: torch.Tensor, rng: random.Random) -> None:
        self.model, self.text, self.rng = model, text, rng
        self.batch, self.seq_len = model.input_shape
        self.gen = torch.Generator().manual_seed(rng.getrandbits(63))
        cuts = list(range(self.seq_len - 1))  # a cut at p changes bytes p+1.. and compares positions ..p
        rng.shuffle(cuts)
        self.chunks = [cuts[i : i + self.batch] for i in range(0, len(cuts), self.batch)] or [[0]]

    def against(self, x: torch.Tensor, a: torch.Tensor) -> None:
        """Test the next chunk of cuts against batch x and its log-probabilities a."""
        if not self.chunks:
            return
        chunk = self.chunks.pop()
        chunk += [self.rng.randrange(self.seq_len) for _ in range(self.batch - len(chunk))]
        move = self.rng.sample(range(self.batch), self.batch)
        x2 = self._random_windows()
        for row, cut in enumerate(chunk):
            noise = torch.randint(1, VOCAB_SIZE, (self.seq_len - cut - 1,), generator=self.gen)
            x2[move[row]] = torch.cat([x[row, : cut + 1], (x[row, cut + 1 :] + noise) % VOCAB_SIZE])
        b = logprobs(self.model, x2).clamp(min=-50)
        for row, cut in enumerate(chunk):
            diff = (a[row, : cut + 1].clamp(min=-50) - b[move[row], : cut + 1]).abs().max().item()
            if not diff <= CAUSAL_TOLERANCE:
                raise ValueError(f"model is not causal: its prediction at position {cut} changed by {diff:.3g} "
                                 "when later bytes, other rows or its row's place in the batch did")

    def finish(self) -> None:
        """The cuts no evaluation batch was left for, on random windows of the text."""
        while self.chunks:
            x = self._random_windows()
            self.against(x, logprobs(self.model, x))

    def _random_windows(self) -> torch.Tensor:
        starts = torch.randint(0, len(self.text) - self.seq_len + 1, (self.batch,), generator=self.gen)
        return self.text[starts[:, None] + torch.arange(self.seq_len)]


def evaluate(model: Program, text: torch.Tensor, rng: random.Random) -> float:
    batch, seq_len = model.input_shape
    n_targets = len(text) - 1
    if not 1 <= seq_len <= n_targets:
        raise ValueError(f"seq_len must be in [1, {n_targets}], got {seq_len}")
    check = CausalCheck(model, text, rng)
    with torch.no_grad():
        starts, scored_upto = windows(n_targets, seq_len)
        offsets = torch.arange(seq_len)
        total_nats, total_count = 0.0, 0
        for call in batches(len(starts), batch):
            idx = torch.tensor([starts[w] for w in call])[:, None] + offsets
            upto = torch.tensor([scored_upto[w] for w in call])
            keep = idx >= upto[:, None]
            keep[[i for i in range(batch) if call[i] in call[:i]]] = False  # padding repeats a row
            lp = logprobs(model, text[idx])
            check.against(text[idx], lp)
            nats = -lp.gather(-1, text[idx + 1][..., None])[..., 0]
            total_nats += nats[keep].sum().item()
            total_count += int(keep.sum().item())
        check.finish()
    if total_count != n_targets:
        raise ValueError(f"scored {total_count} targets, expected {n_targets}")
    return total_nats / (total_count * math.log(2))


def main() -> None:
    output = os.environ.get("AUTORESEARCH_OUTPUT")
    if not output:
        sys.exit("evaluate.py: AUTORESEARCH_OUTPUT is not set (the training run's output folder)")
    path = Path(output) / MODEL_FILE
    if path.is_symlink() or not path.is_file():  # a link could point at the eval data: never followed
        sys.exit(f"evaluate.py: {path} is missing or not a plain file: train.py must save it with safe_export.save")
    try:
        model = load(str(path))
        if len(model.input_shape) != 2:
            raise UnsafeProgram(f"the model must take one (batch, seq_len) input, not {model.input_shape}")
    except UnsafeProgram as exc:
        sys.exit(f"evaluate.py: refused {path}: {exc}")
    held_out = (eval_dir() / "eval.bin").read_bytes()
    text = torch.frombuffer(bytearray(eval_text(held_out)), dtype=torch.uint8).long()
    try:
        val_bpb = evaluate(model, text, random.Random(os.urandom(16)))
    except (ValueError, RuntimeError) as exc:  # RuntimeError: an operator failed on these inputs
        sys.exit(f"evaluate.py: {exc}")
    print(f"val_bpb: {val_bpb:.6f}")


if __name__ == "__main__":
    main()

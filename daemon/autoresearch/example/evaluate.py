"""The trusted evaluation of the example. READ-ONLY for the agent, and no code of train.py runs here.

train.py saves its model to $AUTORESEARCH_OUTPUT/model.pt2 as a torch.export program: a graph of
tensor operations and the weights, no Python code. This script loads it in a fresh sandbox, where
the training run's output is read-only and the held-out split ($AUTORESEARCH_EVAL_DATA, written by
prepare.py, never visible to training) is mounted, and prints the metric that decides:

    val_bpb: <bits per byte on the held-out text>

The text is cut into windows of the model's context length; every target byte is scored once, here,
from the logits. A model whose prediction for byte t+1 depends on later bytes is rejected.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from prepare import VOCAB_SIZE, eval_dir, eval_text

MODEL_FILE = "model.pt2"


def input_shape(program: Any) -> tuple[int, int]:
    """(batch, seq_len) of the program's one input: fixed when train.py exported it."""
    inputs = set(program.graph_signature.user_inputs)
    shapes = [tuple(n.meta["val"].shape) for n in program.graph.nodes if n.op == "placeholder" and n.name in inputs]
    if len(shapes) != 1 or len(shapes[0]) != 2:
        raise ValueError(f"the model must take one (batch, seq_len) input, not {shapes}")
    return int(shapes[0][0]), int(shapes[0][1])


def windows(n_targets: int, seq_len: int) -> tuple[list[int], list[int]]:
    """Window starts, and for each the first target position no earlier window scored."""
    starts = list(range(0, n_targets - seq_len + 1, seq_len))
    if starts[-1] + seq_len < n_targets:
        starts.append(n_targets - seq_len)
    return starts, [0] + [s + seq_len for s in starts[:-1]]


def check_causal(model: Any, x: torch.Tensor, logits: torch.Tensor) -> None:
    cut = x.shape[1] // 2
    if cut == 0:
        return
    x2 = x.clone()
    x2[:, cut:] = (x2[:, cut:] + 1) % VOCAB_SIZE
    a, b = logits[:, :cut].float(), model(x2)[:, :cut].float()
    if (a - b).abs().max().item() > 1e-3 * max(1.0, a.abs().max().item()):
        raise ValueError("model is not causal: its prediction for byte t+1 depends on bytes after t")


def evaluate(model: Any, batch: int, seq_len: int, text: torch.Tensor) -> float:
    n_targets = len(text) - 1
    if not 1 <= seq_len <= n_targets:
        raise ValueError(f"seq_len must be in [1, {n_targets}], got {seq_len}")
    starts, scored_upto = windows(n_targets, seq_len)
    offsets = torch.arange(seq_len)
    total_nats, total_count = 0.0, 0
    with torch.no_grad():
        for b in range(0, len(starts), batch):
            real = starts[b : b + batch]
            s = torch.tensor(real + [real[-1]] * (batch - len(real)))  # the program's batch size is fixed
            idx = s[:, None] + offsets
            x, y = text[idx], text[idx + 1]
            logits = model(x)
            if tuple(logits.shape) != (batch, seq_len, VOCAB_SIZE):
                raise ValueError(f"model returned {tuple(logits.shape)}, expected {(batch, seq_len, VOCAB_SIZE)}")
            if b == 0:
                check_causal(model, x, logits)
            keep = idx >= torch.tensor(scored_upto[b : b + batch] + [n_targets] * (batch - len(real)))[:, None]
            nats = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1), reduction="none")
            total_nats += nats[keep.reshape(-1)].sum().item()
            total_count += int(keep.sum().item())
    if total_count != n_targets:
        raise ValueError(f"scored {total_count} targets, expected {n_targets}")
    return total_nats / (total_count * math.log(2))


def main() -> None:
    output = os.environ.get("AUTORESEARCH_OUTPUT")
    if not output:
        sys.exit("evaluate.py: AUTORESEARCH_OUTPUT is not set (the training run's output folder)")
    path = Path(output) / MODEL_FILE
    if not path.is_file():
        sys.exit(f"evaluate.py: {path} is missing: train.py must save its model there with torch.export")
    torch.manual_seed(0)
    program = torch.export.load(str(path))
    batch, seq_len = input_shape(program)
    held_out = (eval_dir() / "eval.bin").read_bytes()
    text = torch.frombuffer(bytearray(eval_text(held_out)), dtype=torch.uint8).long()
    val_bpb = evaluate(program.module(), batch, seq_len, text)
    print(f"val_bpb: {val_bpb:.6f}")


if __name__ == "__main__":
    main()

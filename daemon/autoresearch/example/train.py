"""A byte-level transformer language model, trained for a fixed wall-clock budget.

This is the file the agent edits. It reports val_bpb on the validation split (prepare.evaluate_bpb),
and saves the trained model to $AUTORESEARCH_OUTPUT/model.pt2 as a torch.export program; the metric
that decides is evaluate.py's, computed from that file on a held-out split training never sees.
The hyperparameters are plain literals, one per line, so that tools can rewrite them: any
reasonable value must run, hence the clamping in main().
"""

import contextlib
import math
import os
import sys
import time

# Idle OpenMP threads spin only briefly before sleeping: on a busy CPU the default long spin slows
# steps by up to 10x, and on an idle one this costs nothing. Read when torch loads libgomp.
os.environ.setdefault("GOMP_SPINCOUNT", "2000")

import safe_export
import torch
import torch.nn.functional as F
from prepare import TIME_BUDGET, VOCAB_SIZE, evaluate_bpb, load_split
from torch import nn

DEPTH = 2  # transformer blocks
D_MODEL = 128  # width of the residual stream
N_HEADS = 4  # attention heads; head dim = D_MODEL // N_HEADS
MLP_RATIO = 4  # MLP hidden width, in multiples of D_MODEL
SEQ_LEN = 128  # context length in bytes
BATCH_SIZE = 8  # sequences per optimizer step (small: many steps in a 30 s CPU budget)
LEARNING_RATE = 1e-3  # peak AdamW learning rate
WEIGHT_DECAY = 0.1  # AdamW weight decay, on weight matrices only
WARMUP_STEPS = 20  # linear learning-rate warmup, in steps
FINAL_LR_FRAC = 0.1  # learning rate at the end of the budget, relative to the peak (cosine decay)
GRAD_CLIP = 1.0  # max global gradient norm; 0 disables clipping
DROPOUT = 0.9  # dropout on attention and residual branches; far too much for 30 s of training (the demo's headroom)


class Block(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a GELU MLP."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, mlp_hidden: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.dropout = n_heads, head_dim, dropout
        self.ln1 = nn.LayerNorm(d_model)
        # n_heads * head_dim may be < d_model when D_MODEL is not a multiple of N_HEADS.
        self.qkv = nn.Linear(d_model, 3 * n_heads * head_dim, bias=False)
        self.proj = nn.Linear(n_heads * head_dim, d_model, bias=False)
        self.ln2 = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, mlp_hidden, bias=False)
        self.out = nn.Linear(mlp_hidden, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout_p)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, -1)))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


class ByteLM(nn.Module):
    def __init__(self, depth: int, d_model: int, n_heads: int, mlp_hidden: int, seq_len: int, dropout: float) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(VOCAB_SIZE, d_model)
        self.pos_emb = nn.Embedding(seq_len, d_model)
        self.drop = nn.Dropout(dropout)
        head_dim = max(1, d_model // n_heads)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, head_dim, mlp_hidden, dropout) for _ in range(depth))
        self.ln_f = nn.LayerNorm(d_model)
        self.apply(self._init)
        # Smaller residual-branch outputs keep the stream's scale independent of depth (GPT-2).
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "out.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * max(1, depth)))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.tok_emb.weight.T  # tied input/output embeddings


def get_batch(
    data: torch.Tensor, batch_size: int, seq_len: int, gen: torch.Generator, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of the training bytes: inputs and the next byte at each position."""
    starts = torch.randint(len(data) - seq_len, (batch_size,), generator=gen)
    chunk = data[starts[:, None] + torch.arange(seq_len + 1)].long().to(device, non_blocking=True)
    return chunk[:, :-1], chunk[:, 1:]


def lr_at(step: int, progress: float) -> float:
    """Linear warmup over steps, then cosine decay over the fraction of the time budget used."""
    warmup = min(1.0, (step + 1) / max(1, WARMUP_STEPS))
    final = min(max(FINAL_LR_FRAC, 0.0), 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return LEARNING_RATE * warmup * (final + (1.0 - final) * cosine)


def export_model(model: nn.Module, seq_len: int) -> None:
    """Save the model as a torch.export program (graph and weights, no Python code) for evaluate.py,
    which runs only the pure tensor operators in safe_export.ALLOWED_OPS."""
    output = os.environ.get("AUTORESEARCH_OUTPUT")
    if not output:
        return
    model.eval()
    # On the CPU, so the evaluator needs no GPU; the batch size is fixed in the program.
    example = torch.zeros(max(1, 8192 // seq_len), seq_len, dtype=torch.long)
    program = torch.export.export(model.float().cpu(), (example,))
    # safe_export.save: torch.export.save without the pickled sample inputs evaluate.py would refuse.
    safe_export.save(program, os.path.join(output, "model.pt2"))


def main() -> None:
    t_start = time.perf_counter()
    seed = int(os.environ.get("AUTORESEARCH_SEED", "0"))  # the daemon varies it for repeats
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, cpus or 1))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True

    # Clamp so that any value a tuner writes above gives a runnable model.
    depth = max(0, int(DEPTH))
    d_model = max(1, int(D_MODEL))
    n_heads = min(max(1, int(N_HEADS)), d_model)
    mlp_hidden = max(1, round(MLP_RATIO * d_model))
    seq_len = max(1, int(SEQ_LEN))
    batch_size = max(1, int(BATCH_SIZE))
    dropout = min(max(float(DROPOUT), 0.0), 0.9)

    train_data = load_split("train")
    gen = torch.Generator().manual_seed(seed)
    model = ByteLM(depth, d_model, n_heads, mlp_hidden, seq_len, dropout).to(device)
    num_params = sum(p.numel() for p in model.parameters())
    # Decay only the weight matrices: not embeddings, norms or biases.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "emb" in n]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
        lr=LEARNING_RATE,
        betas=(0.9, 0.95),  # not constants above: a tuner scaling them past 1 would break AdamW
    )
    amp = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
    print(f"device {device}, {num_params / 1e6:.2f}M params, budget {TIME_BUDGET:g}s", flush=True)

    step, training_time, last_log = 0, 0.0, 0.0
    while training_time < TIME_BUDGET:
        t0 = time.perf_counter()
        x, y = get_batch(train_data, batch_size, seq_len, gen, device)
        lr = lr_at(step, training_time / TIME_BUDGET)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with amp:
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, VOCAB_SIZE), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if GRAD_CLIP > 0:
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        loss_value = loss.item()  # also waits for the GPU, so the step time below is real
        training_time += time.perf_counter() - t0
        step += 1
        if not math.isfinite(loss_value):
            print(f"step {step}: loss is {loss_value}, aborting", flush=True)
            sys.exit(1)
        if step == 1 or training_time - last_log >= 2.0:
            last_log = training_time
            print(
                f"step {step:5d} | loss {loss_value:.4f} | lr {lr:.2e} | "
                f"{training_time:5.1f}/{TIME_BUDGET:g}s | {1000 * training_time / step:.0f} ms/step",
                flush=True,
            )

    val_bpb = evaluate_bpb(model, seq_len, device)
    export_model(model, seq_len)
    peak_vram_mb = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_time:.1f}")
    print(f"total_seconds:    {time.perf_counter() - t_start:.1f}")
    print(f"peak_vram_mb:     {peak_vram_mb:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {num_params / 1e6:.1f}")


if __name__ == "__main__":
    main()

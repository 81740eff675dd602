"""Data preparation and the ground-truth evaluation for the autoresearch example.

READ-ONLY for the agent: train.py imports TIME_BUDGET, load_split and evaluate_bpb from here,
so the metric stays the same whatever train.py becomes.

Corpus: the top-level *.py files of the Python standard library, real text that is present
offline wherever Python is; train.bin holds them (less a few, by a stable hash of their name).
Every file a training run can read is public, the standard library included, so no real text can
be held out from it. The scored text is therefore sampled: a byte n-gram model (orders 0..ORDER,
mixed with fixed weights MIX, and a little uniform noise) is fitted on the start of train.bin, and
val.bin is a sample of it drawn with a public seed, while eval.bin, the held-out text that decides,
is a sample drawn with a secret seed (os.urandom) that only $AUTORESEARCH_EVAL_DATA holds, which
only the evaluator (evaluate.py) can see. A model learns the distribution from train.bin; it cannot
learn the held-out bytes. The best any model can do on eval.bin is its `oracle_bpb` (meta.json of
the eval data): the sampler's own bits per byte. train.py may read train and val, and reports its
own val_bpb on val. The standard library differs a little between Python builds, so compare val_bpb
only between runs that share a cache.

    python3 prepare.py    # one-time; does nothing when the data are already cached

Data live in $AUTORESEARCH_CACHE (default ~/.cache/autoresearch-example) as raw bytes:
train.bin, val.bin and meta.json (written last, so its presence means the .bin files are complete);
and eval.bin + meta.json in $AUTORESEARCH_EVAL_DATA (default ~/.cache/autoresearch-example-eval).
"""

from __future__ import annotations

import array
import bisect
import hashlib
import json
import math
import os
import random
import secrets
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

# Seconds of training per run. The daemon sets the variable for every run; train.py obeys it.
TIME_BUDGET = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", "30"))

FORMAT_VERSION = 3  # bump when the corpus or split changes; stale caches are then rebuilt
HELD_PERCENT = 20  # share of files (by name hash) left out of train.bin
MAX_TRAIN_BYTES = 4 * 1024 * 1024  # a few MB: far more than a short CPU run can see
FIT_BYTES = 1024 * 1024  # the n-gram sampler is fitted on this much of train.bin
ORDER = 4  # the sampler's longest context, in bytes
MIX = (0.0005, 0.0045, 0.02, 0.075, 0.2, 0.7)  # its mixture weights: uniform byte, then orders 0..ORDER
# (chosen so a model trained for 30 s scores about what it scores on real held-out stdlib text)
PUBLIC_SEED = "autoresearch-example-val"  # val.bin's seed; eval.bin's is secret
EVAL_BYTES = 48 * 1024  # bytes scored by evaluate_bpb: ~1 s for the baseline on 2 CPU cores
EVAL_SEGMENTS = 8  # the scored bytes come from this many evenly spaced places in val.bin
VOCAB_SIZE = 256  # byte-level: every byte value is a symbol


def cache_dir() -> Path:
    return Path(os.environ.get("AUTORESEARCH_CACHE") or os.path.expanduser("~/.cache/autoresearch-example"))


def eval_dir() -> Path:
    return Path(os.environ.get("AUTORESEARCH_EVAL_DATA") or os.path.expanduser("~/.cache/autoresearch-example-eval"))


def _in_train(name: str) -> bool:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % 100 >= HELD_PERCENT


class NGramSampler:
    """A mixture of byte n-gram models (orders 0..ORDER) fitted on a text, and a uniform byte.

    Table k holds, sorted, (the k bytes before position i) * 256 + (the byte at i) for every i: the
    entries of one context are one contiguous range, so sampling picks a random entry in it, and
    counting a (context, byte) pair is two bisections.
    """

    def __init__(self, text: bytes) -> None:
        import torch

        data = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
        n = len(data) - ORDER
        self.tables = []
        for k in range(ORDER + 1):
            key = torch.zeros(n, dtype=torch.long)
            for j in range(ORDER - k, ORDER + 1):
                key = key * 256 + data[j : j + n]
            self.tables.append(array.array("q", torch.sort(key).values.tolist()))

    def _ranges(self, context: bytes) -> list[tuple[float, array.array[int], int, int]]:
        seen = []
        for k, table in enumerate(self.tables):
            base = int.from_bytes(context[len(context) - k :], "big") << 8 if k else 0
            lo, hi = bisect.bisect_left(table, base), bisect.bisect_left(table, base + 256)
            if hi > lo:
                seen.append((MIX[k + 1], table, lo, hi))
        return seen

    def sample(self, n: int, seed: str) -> tuple[bytes, float]:
        """n bytes drawn with this seed, and their bits per byte under the sampler (the oracle's)."""
        rng, out, bits = random.Random(seed), bytearray(b"\n" * ORDER), 0.0
        for _ in range(n):
            seen = self._ranges(bytes(out[-ORDER:]))
            total = MIX[0] + sum(w for w, *_ in seen)
            r = rng.random() * total - MIX[0]
            byte = rng.randrange(256)  # the uniform component, unless r lands on an n-gram order
            for w, table, lo, hi in seen:
                if 0 <= r < w:
                    byte = table[rng.randrange(lo, hi)] & 255
                    break
                r -= w
            p = MIX[0] / 256
            for w, table, lo, hi in seen:
                key = (table[lo] >> 8 << 8) + byte
                hits = bisect.bisect_left(table, key + 1, lo, hi) - bisect.bisect_left(table, key, lo, hi)
                p += w * hits / (hi - lo)
            bits -= math.log2(p / total)
            out.append(byte)
        return bytes(out[ORDER:]), bits / max(1, n)


def _read_meta(directory: Path, splits: tuple[str, ...] = ("train", "val")) -> dict[str, Any] | None:
    """The cached metadata if the cache is complete and current, else None."""
    try:
        meta = json.loads((directory / "meta.json").read_text())
        complete = all(
            (directory / f"{split}.bin").stat().st_size == meta[f"{split}_bytes"] for split in splits
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if complete and meta.get("version") == FORMAT_VERSION else None


def _write_atomic(path: Path, data: bytes) -> None:
    # Write-then-rename: a crash or a concurrent prepare never leaves a half-written file in place.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prepare() -> dict[str, Any]:
    directory = cache_dir()
    meta = _read_meta(directory)
    if meta is not None and _read_meta(eval_dir(), ("eval",)) is not None:
        print(f"cached: {directory} (train {meta['train_bytes']:,} B, val {meta['val_bytes']:,} B)")
        return meta

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.is_file() and _in_train(p.name))
    train = bytearray()
    for path in files:
        if len(train) < MAX_TRAIN_BYTES:
            train += path.read_bytes()[: MAX_TRAIN_BYTES - len(train)]
    if len(train) < 2 * FIT_BYTES:
        sys.exit(f"prepare.py: too little text in {stdlib} ({len(train)} B of *.py files)")
    sampler = NGramSampler(bytes(train[:FIT_BYTES]))
    val, val_oracle = sampler.sample(EVAL_BYTES + 1, PUBLIC_SEED)
    # The held-out text first, in its own folder: the training sandbox never has it mounted.
    seed = secrets.token_hex(16)
    held_out, oracle = sampler.sample(EVAL_BYTES + 1, seed)
    eval_folder = eval_dir()
    eval_folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(eval_folder / "eval.bin", held_out)
    eval_meta = {"version": FORMAT_VERSION, "seed": seed, "eval_bytes": len(held_out),
                 "oracle_bpb": round(oracle, 6), "eval_sha256": hashlib.sha256(held_out).hexdigest()}
    _write_atomic(eval_folder / "meta.json", json.dumps(eval_meta, indent=2).encode())

    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / "train.bin", bytes(train))
    _write_atomic(directory / "val.bin", val)
    meta = {
        "version": FORMAT_VERSION,
        "source": str(stdlib),
        "python": sys.version.split()[0],
        "train_files": len(files),
        "train_bytes": len(train),
        "val_bytes": len(val),
        "val_oracle_bpb": round(val_oracle, 6),
        "train_sha256": hashlib.sha256(train).hexdigest(),
        "val_sha256": hashlib.sha256(val).hexdigest(),
    }
    _write_atomic(directory / "meta.json", json.dumps(meta, indent=2).encode())  # last: marks completion
    print(
        f"wrote {directory}: train {len(train):,} B from {len(files)} files, val {len(val):,} B sampled "
        f"(oracle {val_oracle:.3f} bpb); held-out eval {len(held_out):,} B sampled with a secret seed in {eval_folder}"
    )
    return meta


def _read_split(name: str) -> bytes:
    if name not in ("train", "val"):
        raise ValueError(f"unknown split {name!r}: expected 'train' or 'val'")
    path = cache_dir() / f"{name}.bin"
    if _read_meta(cache_dir()) is None:
        raise FileNotFoundError(f"{path} is missing or incomplete: run `python3 prepare.py` first")
    return path.read_bytes()


def load_split(name: str) -> Any:
    """The bytes of split 'train' or 'val' as a 1-D torch.uint8 tensor (on the CPU)."""
    import torch

    # bytearray: torch.frombuffer wants a writable buffer.
    return torch.frombuffer(bytearray(_read_split(name)), dtype=torch.uint8)


def eval_text(val: bytes) -> bytes:
    """The fixed text that is scored: EVAL_SEGMENTS evenly spaced slices of a split, joined
    (EVAL_BYTES + 1 bytes: every byte after the first is a target)."""
    seg = EVAL_BYTES // EVAL_SEGMENTS
    sizes = [seg] * (EVAL_SEGMENTS - 1) + [EVAL_BYTES + 1 - seg * (EVAL_SEGMENTS - 1)]
    stride = (len(val) - sizes[-1]) // max(1, EVAL_SEGMENTS - 1)
    return b"".join(val[i * stride : i * stride + n] for i, n in enumerate(sizes))


def evaluate_bpb(model: Any, seq_len: int, device: Any, batch_tokens: int = 8192) -> float:
    """Mean cross-entropy of the next byte, in bits per byte, over the fixed evaluation text.

    model(x) takes x, a (B, seq_len) LongTensor of byte values, and returns logits (B, seq_len, 256);
    the logit at position t predicts byte t + 1. The text is cut into windows of seq_len bytes
    (the last one shifted back to stay full length), and each of the EVAL_BYTES targets is scored
    exactly once, here, from the logits: train.py cannot change how the loss is computed.
    A quick check rejects models whose predictions depend on later bytes (that is not prediction).
    """
    import torch
    import torch.nn.functional as F

    seq_len = int(seq_len)
    device = torch.device(device)
    text = torch.frombuffer(bytearray(eval_text(_read_split("val"))), dtype=torch.uint8).long()
    n_targets = len(text) - 1
    if not 1 <= seq_len <= n_targets:
        raise ValueError(f"seq_len must be in [1, {n_targets}], got {seq_len}")

    starts = list(range(0, n_targets - seq_len + 1, seq_len))
    if starts[-1] + seq_len < n_targets:
        starts.append(n_targets - seq_len)
    offsets = torch.arange(seq_len)
    # Position p of the window at s is target s + p + 1; keep the targets no earlier window scored.
    scored_upto = [0] + [s + seq_len for s in starts[:-1]]
    batch = max(1, batch_tokens // seq_len)
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    was_training = model.training
    model.eval()
    total_nats, total_count = 0.0, 0
    try:
        with torch.no_grad():
            for b in range(0, len(starts), batch):
                s = torch.tensor(starts[b : b + batch])
                idx = s[:, None] + offsets
                x, y = text[idx].to(device), text[idx + 1].to(device)
                keep = (s[:, None] + offsets >= torch.tensor(scored_upto[b : b + batch])[:, None]).to(device)
                with amp:
                    logits = model(x)
                if tuple(logits.shape) != (len(s), seq_len, VOCAB_SIZE):
                    raise ValueError(f"model returned {tuple(logits.shape)}, expected {(len(s), seq_len, VOCAB_SIZE)}")
                if b == 0:
                    _check_causal(model, x, logits, amp)
                nats = F.cross_entropy(logits.float().reshape(-1, VOCAB_SIZE), y.reshape(-1), reduction="none")
                total_nats += nats[keep.reshape(-1)].sum().item()
                total_count += int(keep.sum().item())
    finally:
        model.train(was_training)
    assert total_count == n_targets, (total_count, n_targets)
    return total_nats / (total_count * math.log(2))


def _check_causal(model: Any, x: Any, logits: Any, amp: Any) -> None:
    """Raise if the logits for the first half of the windows change when the second half does."""
    cut = x.shape[1] // 2
    if cut == 0:
        return
    x2 = x.clone()
    x2[:, cut:] = (x2[:, cut:] + 1) % VOCAB_SIZE
    with amp:
        logits2 = model(x2)
    a, b = logits[:, :cut].float(), logits2[:, :cut].float()
    # Loose tolerance (bf16 on GPU); reading the future changes logits by far more.
    if (a - b).abs().max().item() > 1e-2 * max(1.0, a.abs().max().item()):
        raise ValueError("model is not causal: its prediction for byte t+1 depends on bytes after t")


if __name__ == "__main__":
    t0 = time.perf_counter()
    prepare()
    print(f"prepare.py took {time.perf_counter() - t0:.2f} s")

"""The example's evaluation, safe versus torch's: load and score times of one exported model.

    python3 bench/evaluator.py [--repeats N] [--eval-bytes B] [--smoke]

Exports the example's ByteLM at train.py's default size (random weights: the cost does not depend
on them), then times, each over N repeats (median):
- ``torch``: torch.export.load (pickles allowed) and one forward per evaluation batch, as the
  evaluator did before issue 18;
- ``safe``: safe_export.load (JSON graph + raw tensors, op allow-list) and evaluate.evaluate (the
  interpreter, the causal check on every position, strided batches) on a held-out-sized text
  (``--eval-bytes``, default prepare.EVAL_BYTES).

The last line, ``evaluator_s: torch=X safe=Y ratio=Z``, is for scripts. ``--smoke``: one repeat on
4 KiB of text (CI).
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[1] / "daemon" / "autoresearch" / "example"


def timed(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-bytes", type=int, default=0, help="bytes scored (default: prepare.EVAL_BYTES)")
    parser.add_argument("--smoke", action="store_true", help="1 repeat, 4 KiB: the code paths, in seconds (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.repeats, args.eval_bytes = 1, 4096
    import torch

    # The example's own modules, from its folder (plain scripts, outside the type-checked package).
    sys.path.insert(0, str(EXAMPLE))
    evaluate, prepare, safe_export, train = (importlib.import_module(name)
                                             for name in ("evaluate", "prepare", "safe_export", "train"))

    model = train.ByteLM(train.DEPTH, train.D_MODEL, train.N_HEADS, train.MLP_RATIO * train.D_MODEL,
                         train.SEQ_LEN, 0.0).eval()
    batch = max(1, 8192 // train.SEQ_LEN)
    program = torch.export.export(model, (torch.zeros(batch, train.SEQ_LEN, dtype=torch.long),))
    text = torch.randint(0, 256, ((args.eval_bytes or prepare.EVAL_BYTES) + 1,))
    with tempfile.TemporaryDirectory() as tmp:
        plain, safe = f"{tmp}/plain.pt2", f"{tmp}/safe.pt2"
        torch.export.save(program, plain)  # torch's own archive, sample inputs pickled
        safe_export.save(program, safe)
        n_windows = (len(text) - 1) // train.SEQ_LEN

        def torch_eval() -> None:
            module = torch.export.load(plain).module()
            with torch.no_grad():
                for _ in range(-(-n_windows // batch)):
                    module(torch.zeros(batch, train.SEQ_LEN, dtype=torch.long))

        def safe_eval() -> None:
            evaluate.evaluate(safe_export.load(safe), text, random.Random(0))

        results = {"torch": timed(torch_eval, args.repeats), "safe": timed(safe_eval, args.repeats)}
    for name, seconds in results.items():
        print(f"{name:6s} load + evaluate: {seconds:6.2f} s (median of {args.repeats})")
    print(f"safe / torch: {results['safe'] / results['torch']:.2f}x")
    print(f"evaluator_s: torch={results['torch']:.3f} safe={results['safe']:.3f} "
          f"ratio={results['safe'] / results['torch']:.2f}")


if __name__ == "__main__":
    main()

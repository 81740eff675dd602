"""How often a change that does nothing is kept, on the bundled example with its evaluator.

    python3 bench/false_keeps.py [--proposals N] [--budget S] [--repeats R] [--z Z] [--alpha A]
                               [--max-repeats K] [--smoke]

A command agent appends a comment to train.py (a no-op) N times; the loop runs each for S seconds
of training, evaluates it, and judges it with the noise-aware keep rule. A keep of a no-op is a
false keep. Prints σ, the false-keep rate, and what confirmations cost: extra runs ÷ runs, where
extra runs are the `confirm:` rows after the first proposal: a candidate's re-runs and the best's fresh
runs it is compared with (the baseline's repeats are counted apart).
``--repeats 0 --z 0`` gives the seed's rule (keep any lower number) for comparison. The last line,
``false_keep_rate: value=X false_keeps=F proposals=N confirmation_cost=C``, is for scripts.
``--smoke`` (CI): a baseline and 1 proposal of 0.5 s, no repeats (two runs of the real example).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from autoresearch.cli.commands import build_loop, init_repo
from autoresearch.cli.example import write_example
from autoresearch.judging.noise import sigma
from autoresearch.ops.config import NoiseSettings

AGENT = """\
import sys, time
from pathlib import Path
target = Path(sys.argv[1])
target.write_text(target.read_text() + f"# no-op {time.time_ns()}\\n")
Path(".autoresearch-description").write_text("append a comment\\n")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=20)
    parser.add_argument("--budget", type=float, default=1.0)
    # The daemon's own defaults: the figure is what a user gets unless a flag says otherwise.
    defaults = NoiseSettings()
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--z", type=float, default=defaults.z, help="the first look's screen (z·σ)")
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="false-keep budget per candidate")
    parser.add_argument("--max-repeats", type=int, default=defaults.max_repeats)
    parser.add_argument("--smoke", action="store_true", help="a baseline and 1 proposal: the code paths (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.proposals, args.budget, args.repeats = 1, 0.5, 0
    with tempfile.TemporaryDirectory(prefix="false-keeps-") as tmp:
        root = Path(tmp)
        repo = write_example(root / "example")
        (root / "agent").mkdir()
        agent = root / "agent" / "agent.py"
        agent.write_text(AGENT)
        os.environ.update({
            "AUTORESEARCH_CACHE_DIR": str(root / "cache"),
            "AUTORESEARCH_EVAL_DATA": str(root / "eval"),
            "AUTORESEARCH_AGENT": "command",
            # A measured setting: init pins it in the session, so it must be set before init, not as a flag
            # of the loop (the example's committed autoresearch.toml says 30 s).
            "AUTORESEARCH_BUDGET": str(args.budget),
            "AUTORESEARCH_COMMAND_AGENT__COMMAND": f"{sys.executable} {agent} {{target}}",
            # The agent's sandbox sees only its scratch checkout: the script's folder is mounted read-only.
            "AUTORESEARCH_COMMAND_AGENT__MOUNTS": json.dumps([str(agent.parent)]),
            "AUTORESEARCH_NOISE__REPEATS": str(args.repeats),
            "AUTORESEARCH_NOISE__Z": str(args.z),
            "AUTORESEARCH_NOISE__MAX_REPEATS": str(args.max_repeats),
            "AUTORESEARCH_NOISE__ALPHA": str(args.alpha),
        })
        init_repo(repo, "bench", {})
        loop = build_loop(repo, {"grace": 120.0, "runner": "process"})
        started = time.monotonic()
        while True:
            state = loop.journal.load()
            proposals = [e for e in state.completed() if e.agent == "command"]
            if len(proposals) >= args.proposals and state.completed()[-1].decision != "remeasure":
                break
            loop.settings.limits.max_experiments = len(state.completed()) + 1
            loop.run()
        state = loop.journal.load()
        done = state.completed()
        candidates = {e.n for e in done if e.agent == "command"}
        kept = {e.confirm_of if e.confirm_of is not None else e.n for e in done if e.status == "keep"} & candidates
        # Re-measurements before the first proposal are the baseline's repeats; after it, confirmations
        # (of a candidate, or fresh runs of the best to confirm one against).
        start = min(candidates, default=len(done))
        confirmations = [e for e in done if e.agent == "judge" and e.n > start]
        repeats = [e for e in done if e.agent == "judge" and e.n < start]
        print(f"runs: {len(done)} (baseline 1, repeats {len(repeats)}, proposals {len(candidates)}, "
              f"confirmations {len(confirmations)}) in {time.monotonic() - started:.0f} s, budget {args.budget:g} s")
        print(f"metrics: {' '.join(f'{e.metric:.4f}' for e in done if e.metric is not None)}")
        print(f"sigma: {sigma(state):.6f}")
        print(f"false_keeps: {len(kept)} of {len(candidates)}")
        cost, rate = len(confirmations) / len(done), len(kept) / max(1, len(candidates))
        print(f"confirmation_cost: {cost:.3f} (extra runs / runs)")
        print(f"false_keep_rate: value={rate:.3f} false_keeps={len(kept)} proposals={len(candidates)} "
              f"confirmation_cost={cost:.3f}")


if __name__ == "__main__":
    main()

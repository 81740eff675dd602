"""What a run's throwaway home layer costs: building it (the home's tree, a symlink per file) and
removing it, for homes of a given size.

    python3 bench/home_layer.py [--files 1000,10000] [--per-dir 100] [--repeats 5] [--smoke]

Each home holds ``--files`` files spread over folders of ``--per-dir`` (as data shards, a tokenizer
and a hub cache are), plus a uv cache of the same size, which a layer links as one entry. Printed per
size: median and max milliseconds to build the layer and to remove it, then per size a line for scripts,
``home_layer_ms: files=N build_median=X remove_median=Y``. ``--smoke``: 100 files, 2 repeats (CI).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from autoresearch.runners.home import build_layer


def make_home(root: Path, files: int, per_dir: int) -> Path:
    home = root / "home"
    for i in range(files):
        folder = home / ".cache" / "data" / f"d{i // per_dir:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"shard_{i:06d}.bin").write_bytes(b"x")
        uv = home / ".cache" / "uv" / f"w{i // per_dir:04d}"
        uv.mkdir(parents=True, exist_ok=True)
        (uv / f"f{i:06d}").write_bytes(b"y")
    return home


def measure(home: Path, repeats: int) -> tuple[list[float], list[float]]:
    build, remove = [], []
    for n in range(repeats):
        layer = home.parent / f"layer{n}"
        layer.mkdir()
        started = time.perf_counter()
        build_layer(home, layer)
        build.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        shutil.rmtree(layer)
        remove.append((time.perf_counter() - started) * 1000)
    return build, remove


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="1000,10000")
    parser.add_argument("--per-dir", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="100 files, 2 repeats: the code paths, in seconds (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.files, args.repeats = "100", 2
    print(f"{'files':>8} {'build ms (median/max)':>24} {'remove ms (median/max)':>24}")
    figures = []
    for files in (int(f) for f in args.files.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            build, remove = measure(make_home(Path(tmp), files, args.per_dir), args.repeats)
        print(f"{files:>8} {statistics.median(build):>15.1f} / {max(build):<6.1f} "
              f"{statistics.median(remove):>15.1f} / {max(remove):<6.1f}")
        figures.append(f"home_layer_ms: files={files} build_median={statistics.median(build):.1f} "
                       f"remove_median={statistics.median(remove):.1f}")
    print("\n".join(figures))


if __name__ == "__main__":
    main()

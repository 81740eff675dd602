"""The dashboard under a night's worth of data: page load and transfer size, the server's CPU while
clients watch, and how soon a new journal record shows up as a row.

    python3 bench/dashboard.py [--experiments 500] [--clients 5] [--seconds 30] [--every 5] [--smoke]

A research repo is initialised and its journal given ``--experiments`` recorded experiments (written
as the daemon writes them: proposed, committed, running, finished, recorded; about a tenth crashes,
keeps improving the metric), then ``autoresearch serve`` (a real subprocess) is started. Printed:

- page load: headless Chromium (Debian's, through Playwright) from navigation until the table holds
  every row and the chart image is decoded, cold (the server draws the chart) and warm; the bytes
  received for it (CDP's encodedDataLength: what crossed the socket, gzip included), per request type;
- CPU: the server's user+system CPU time over ``--seconds`` while ``--clients`` event-stream clients and
  one browser page watch, idle and then with a new experiment recorded every ``--every`` seconds and
  a run log growing twice a second (as a training run writes it);
- latency: from appending a ``recorded`` record to the row being in the browser's DOM (median, max).

The last line, ``dashboard: experiments=N load_cold_s=… load_warm_s=… cpu_idle_pct=… cpu_busy_pct=…
latency_median_ms=…``, is for scripts. ``--smoke`` (CI): 20 experiments, 1 client, 1 s of CPU each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # imported where used: playwright is needed only to run the bench
    from playwright.sync_api import Browser

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@b", "AUTORESEARCH_PROCESS__SANDBOX": "none"}
TRAIN = 'import os\nLR = 0.5\nprint("val_bpb: %.6f" % ((LR - 0.1) ** 2 + 1.0))\n'
WORDS = ("raise", "lower", "warmup", "dropout", "width", "depth", "lr", "schedule", "rope", "norm", "batch")


def make_session(root: Path) -> Path:
    repo = root / "research"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "research repo"]):
        subprocess.run(["git", *args], cwd=repo, env=ENV, check=True)
    cmd = [sys.executable, "-m", "autoresearch", "init", str(repo), "--tag", "bench", "--runner", "process"]
    subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    return repo


class Writer:
    """Appends experiments as the daemon's journal does (one JSON line per phase record)."""

    def __init__(self, repo: Path, rng: random.Random) -> None:
        self.path = repo / ".git/autoresearch/journal.jsonl"
        self.parent = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                                     check=True).stdout.strip()
        self.rng = rng
        self.n = 0
        self.best = 1.2
        self.runs = repo / ".git/autoresearch/runs"

    def experiment(self, description: str | None = None, lane: int = 0) -> str:
        n, rng = self.n, self.rng
        self.n += 1
        desc = description or (f"{rng.choice(WORDS)} {rng.choice(WORDS)} "
                               f"{rng.uniform(0, 2):.3f} -> {rng.uniform(0, 2):.3f}")
        crash = n > 0 and rng.random() < 0.1
        metric = None if crash else self.best + rng.gauss(0.004, 0.01)
        status = "keep" if n == 0 or (metric is not None and metric < self.best - 0.005) else (
            "crash" if crash else "discard")
        if status == "keep" and metric is not None:
            self.best = metric
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        common = {"type": "phase", "n": n, "lane": lane, "at": now}
        records = [
            {**common, "phase": "proposed", "parent": self.parent, "description": desc, "content": TRAIN,
             "when": now[:19] + "+00:00", "agent": "bench", "propose_s": 20.0, "seed": n,
             "usage": {"input_tokens": 9000, "output_tokens": 900, "cost_usd": 0.04}},
            # Its own commit id (never shown as a diff here): rows are joined to their runs by commit.
            {**common, "phase": "committed", "commit": hashlib.sha1(f"{n}".encode()).hexdigest()},
            {**common, "phase": "running", "handle": {}},
            {**common, "phase": "finished", "cause": "exit:1" if crash else "ok", "exit_code": 1 if crash else 0,
             "metric": metric, "memory_gb": 11.5, "wall_s": 300.0},
            {**common, "phase": "recorded", "status": status, "row_description": desc, "best_metric": self.best,
             "decision": status, "reason": "first" if n == 0 else "better" if status == "keep" else "within noise",
             "sigma": 0.004, "confidence": 3.1 if status == "keep" else 0.4, "mean": metric},
        ]
        with self.path.open("a") as fh:
            fh.write("".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records))
        return desc

    def running(self, lane: int = 0) -> Path:
        """An experiment training now: its log grows while the CPU is measured."""
        n = self.n
        self.n += 1
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        common = {"type": "phase", "n": n, "lane": lane, "at": now}
        with self.path.open("a") as fh:
            for r in ({**common, "phase": "proposed", "parent": self.parent, "description": "in flight",
                       "content": TRAIN, "when": now[:19] + "+00:00"},
                      {**common, "phase": "committed", "commit": self.parent},
                      {**common, "phase": "running", "handle": {}}):
                fh.write(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n")
        log = self.runs / str(n) / "run.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        return log


def serve(repo: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "serve", str(repo), "--listen", "127.0.0.1:0",
                             "--log-level", "warning"], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None
    for line in proc.stdout:
        if match := re.search(r"dashboard: (http://\S+/)", line):
            return proc, match.group(1)
    raise SystemExit(f"serve did not start (exit {proc.wait()})")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_page(browser: Browser, url: str, rows: int) -> tuple[float, dict[str, int]]:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    kinds: dict[str, str] = {}
    received: dict[str, int] = {}
    cdp.on("Network.responseReceived", lambda e: kinds.__setitem__(e["requestId"], e["type"]))
    cdp.on("Network.dataReceived", lambda e: received.__setitem__(
        e["requestId"], received.get(e["requestId"], 0) + e["encodedDataLength"]))
    cdp.on("Network.loadingFinished", lambda e: received.__setitem__(e["requestId"], int(e["encodedDataLength"])))
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_function(f"() => document.querySelectorAll('#rows tbody tr.row').length >= {rows}"
                           " && document.querySelector('#chart').naturalWidth > 0", timeout=120_000)
    elapsed = time.perf_counter() - start
    by_kind: dict[str, int] = {}
    for request, size in received.items():
        kind = kinds.get(request, "Other")
        by_kind[kind] = by_kind.get(kind, 0) + size
    page.close()
    return elapsed, by_kind


def watch(url: str, stop: threading.Event, received: list[int]) -> None:
    """An event-stream client; ``received`` gets the size of every line it reads."""
    with httpx.Client(timeout=None) as client, client.stream("GET", url + "events") as stream:
        for line in stream.iter_lines():
            received.append(len(line) + 1)
            if stop.is_set():
                return


def measure_cpu(pid: int, seconds: float, tick: float, action: Callable[[], None] | None = None) -> float:
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    while time.monotonic() - start < seconds:
        if action is not None:
            action()
        time.sleep(tick)
    return 100 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=500)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--smoke", action="store_true", help="a small journal, 1 s windows: the code paths (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.experiments, args.clients, args.seconds, args.every = 20, 1, 1.0, 0.5
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("bench/dashboard.py: chromium is not installed (apt-get install chromium; .ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="ar-bench-dash-"))
    proc = None
    try:
        repo = make_session(root)
        writer = Writer(repo, random.Random(0))
        for _ in range(args.experiments):
            writer.experiment()
        proc, url = serve(repo)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            cold, sizes = load_page(browser, url, args.experiments)
            warm, warm_sizes = load_page(browser, url, args.experiments)
            print(f"page load, {args.experiments} experiments: cold {cold:.2f} s, warm {warm:.2f} s")
            state = httpx.get(url + "api/state", headers={"accept-encoding": "identity"}).content
            print(f"state: {len(state) / 1024:.0f} KiB as JSON, {len(gzip.compress(state)) / 1024:.0f} KiB gzipped "
                  "(the page's first fetch; the stream then sends only changes)")
            print(f"transferred: {sum(sizes.values()) / 1024:.0f} KiB cold ("
                  + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in sorted(sizes.items())) + f"), "
                  f"{sum(warm_sizes.values()) / 1024:.0f} KiB warm")

            page = browser.new_page()
            page.goto(url)
            page.wait_for_function(
                f"() => document.querySelectorAll('#rows tbody tr.row').length >= {args.experiments}")
            stop, events = threading.Event(), list[int]()
            clients = [threading.Thread(target=watch, args=(url, stop, events), daemon=True)
                       for _ in range(args.clients)]
            for client in clients:
                client.start()
            time.sleep(2)
            idle = measure_cpu(proc.pid, args.seconds, 0.5)
            log = writer.running()
            last = [time.monotonic()]

            def activity() -> None:
                with log.open("a") as fh:
                    fh.write(f"step {time.time():.0f} loss {random.random():.4f}\n")
                if time.monotonic() - last[0] >= args.every:
                    writer.experiment()
                    last[0] = time.monotonic()

            before = sum(events)
            busy = measure_cpu(proc.pid, args.seconds, 0.5, activity)
            per_client = (sum(events) - before) / args.clients / args.seconds * 60 / 1024
            print(f"server CPU, {args.clients} event-stream clients + 1 browser page: idle {idle:.1f}% of a core, "
                  f"a new experiment every {args.every:g} s and a growing run log {busy:.1f}% "
                  f"({per_client:.0f} KiB a minute to each stream)")

            delays = []
            for i in range(5):
                marker = f"latency probe {i} {random.random():.6f}"
                start = time.perf_counter()
                writer.experiment(description=marker)
                page.wait_for_function(f"() => document.body.textContent.includes({marker!r})", timeout=30_000)
                delays.append(time.perf_counter() - start)
            print(f"journal record -> row in the browser: median {statistics.median(delays) * 1000:.0f} ms, "
                  f"max {max(delays) * 1000:.0f} ms (the server polls the journal every 0.25 s)")
            stop.set()
            browser.close()
        print(f"dashboard: experiments={args.experiments} load_cold_s={cold:.2f} load_warm_s={warm:.2f} "
              f"cpu_idle_pct={idle:.1f} cpu_busy_pct={busy:.1f} "
              f"latency_median_ms={statistics.median(delays) * 1000:.0f}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

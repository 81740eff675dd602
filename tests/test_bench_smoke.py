"""Every bench in ``bench/`` runs in CI, so none can rot unseen: ``python bench/X.py --smoke`` (tiny sizes,
the same code paths) must exit 0 and print at least one figure line.

The benches are found by glob, so a new one is covered without editing a list (``_*.py`` would be a
helper, not a bench). A figure line is what scripts read: ``name: key=value ...`` with at least one
finite number among the values (``scaling_efficiency: lanes=8 value=0.966``). A bench that needs Docker
or bubblewrap gets what the tests get: CI provides both, and ``AUTORESEARCH_REQUIRE_DOCKER=1`` makes a
missing engine an error there (the benches read it, as the tests' conftest does).

A bench that cannot run here because something it needs is missing (a Slurm cluster) says what on stderr
and exits 77, the "skipped" status of automake's test harness: a skip here, but a failure in CI
(``CI=true``), where whatever a bench needs is installed, as a test that needs a tool fails there.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
FIGURE = re.compile(r"^[a-z][a-z0-9_]*: ([a-z][a-z0-9_]*=\S+)( [a-z][a-z0-9_]*=\S+)*$")
TIMEOUT_S = 600  # one bench's smoke: seconds on an idle machine, minutes on a loaded 2-core one
WORKERS = 3
"""Benches run at once (each is mostly sleeping; more would make their own timeouts the risk)."""
MISSING = 77
"""A bench's exit status for "what I need is not here" (the harness's skip)."""


def figures(output: str) -> list[str]:
    """The figure lines of a bench's output: ``name: k=v ...`` with a finite number among the values."""
    found = []
    for line in output.splitlines():
        if FIGURE.match(line.strip()) and any(_finite(v.split("=", 1)[1]) for v in line.split(": ", 1)[1].split()):
            found.append(line.strip())
    return found


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def test_the_glob_finds_the_benches() -> None:
    assert {"false_keeps.py", "lanes.py", "overhead.py"} <= {p.name for p in SCRIPTS}


def test_figure_lines_are_told_from_prose() -> None:
    assert figures("scaling_efficiency: lanes=8 value=0.966\n") == ["scaling_efficiency: lanes=8 value=0.966"]
    assert figures("overhead_per_experiment_s: bwrap=0.099 docker=n/a") != []
    assert figures("false_keeps: 0 of 20\nsigma: 0.3\nsafe / torch: 2.1x\n") == []
    assert figures("chaos: resume_median_s=n/a resume_max_s=nan") == []  # no finite number: no figure


def verdict(returncode: int, stdout: str, stderr: str, ci: bool) -> tuple[str, str]:
    """("pass" | "skip" | "fail", why) for one bench's smoke run."""
    tail = f"\n--- stdout\n{stdout[-4000:]}\n--- stderr\n{stderr[-4000:]}"
    if returncode == MISSING and not ci:
        return "skip", f"cannot run here: {stderr.strip().splitlines()[-1:]}"
    if returncode != 0:
        why = " (something it needs is missing, in CI)" if returncode == MISSING else ""
        return "fail", f"exited {returncode}{why}{tail}"
    if not figures(stdout):
        return "fail", f"printed no figure line (name: key=value ...){tail}"
    return "pass", ""


def test_verdicts() -> None:
    good = "busy_fraction: serial=0.8 pipelined=0.98\n"
    assert verdict(0, good, "", ci=True)[0] == "pass"
    assert verdict(0, "all fine\n", "", ci=False)[0] == "fail"
    assert verdict(2, good, "usage: unrecognized arguments: --smoke", ci=False)[0] == "fail"
    assert verdict(MISSING, "", "no cluster answers", ci=False) == ("skip", "cannot run here: ['no cluster answers']")
    assert verdict(MISSING, "", "no cluster answers", ci=True)[0] == "fail"


@dataclass(frozen=True)
class Smoke:
    returncode: int | None
    """None: killed past ``TIMEOUT_S``."""
    stdout: str
    stderr: str


def run_smoke(script: Path) -> Smoke:
    # Its own process group: a bench past its time is killed with all it started (daemons, servers, browsers).
    proc = subprocess.Popen([sys.executable, str(script), "--smoke"], cwd=BENCH.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return Smoke(None, stdout, stderr)
    return Smoke(proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def smokes(request: pytest.FixtureRequest) -> Iterator[dict[Path, Future[Smoke]]]:
    """The selected benches' smoke runs, started together, ``WORKERS`` at a time: they mostly sleep (budgets,
    agents, polls), so this cuts the wall time; what each run must show is unchanged."""
    wanted = [Path(str(item.callspec.params["script"])) for item in request.session.items
              if isinstance(item, pytest.Function) and item.originalname == "test_bench_smoke"]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        yield {script: pool.submit(run_smoke, script) for script in wanted}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_bench_smoke(script: Path, smokes: dict[Path, Future[Smoke]]) -> None:
    run = smokes[script].result()
    if run.returncode is None:
        pytest.fail(f"{script.name} --smoke ran past {TIMEOUT_S} s:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    outcome, why = verdict(run.returncode, run.stdout, run.stderr, ci=os.environ.get("CI") == "true")
    if outcome == "skip":
        pytest.skip(f"{script.name} {why}")
    assert outcome == "pass", f"{script.name} --smoke {why}"

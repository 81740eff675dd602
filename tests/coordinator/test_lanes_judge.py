"""Two lanes with the noise-aware judge on (repeats, confirmations): issue 17's findings 1 and 2 through the
loop itself. Each run waits for its gate, so the test decides the order in which runs end."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from autoresearch.coordinator.loop import Loop, StopReason
from autoresearch.git.workspace import FakeWorkspace
from autoresearch.journal.store import Experiment, JournalState
from tests.loop_fakes import TARGET, lanes_loop, wait_until

C = TARGET.replace("LR = 0.5", "LR = 0.3")
K = TARGET.replace("WIDTH = 8", "WIDTH = 16")
BOTH = C.replace("WIDTH = 8", "WIDTH = 16")
# Each content's measurements, in the order its runs end: the baseline's σ is 0.02; C's first run (1.9) is
# past the screen but not clear at once; K's (1.5) is clear at once.
VALUES = {TARGET: [2.0, 2.02, 1.98, 2.0, 2.0, 2.0], C: [1.9, 1.0, 1.0], K: [1.5, 1.5, 1.5], BOTH: [1.0, 1.0, 1.0]}


def scorer() -> tuple[dict[str, Iterator[float]], Callable[[str], float]]:
    values = {k: iter(v) for k, v in VALUES.items()}
    fallback: dict[str, int] = defaultdict(int)

    def score(content: str) -> float:
        if content in values:
            return next(values[content])
        fallback[content] += 1
        return 2.5  # a variant the agent made up: clearly worse
    return values, score


def _state(loop: Loop) -> JournalState:
    return loop.journal.load()


def _find(loop: Loop, what: str, predicate: Callable[[Experiment], bool]) -> int:
    """The number of the first experiment that matches, once it is running (lanes number them as they go)."""
    found: list[int] = []

    def running() -> bool:
        found[:] = [e.n for e in _state(loop).ordered() if predicate(e) and e.phase == "running"]
        return bool(found)
    wait_until(running, what)
    return found[0]


def _release(loop: Loop, gates: dict[int, threading.Event], n: int) -> None:
    gates.setdefault(n, threading.Event()).set()
    wait_until(lambda: _state(loop).experiments[n].done, f"#{n} recorded")


def test_a_confirmation_overtaken_by_another_lanes_keep_is_rebased_never_kept(tmp_path: Path) -> None:
    _, score = scorer()
    loop, gates = lanes_loop(tmp_path, score, [(C, "c"), (K, "k")], noise={"repeats": 2},
                             limits={"max_experiments": 3})
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(loop.run()), daemon=True)
    thread.start()
    _release(loop, gates, _find(loop, "the baseline", lambda e: e.baseline))
    base = _state(loop).experiments[0]
    first = _find(loop, "a repeat", lambda e: e.confirm_of == 0)
    repeats = [first, _find(loop, "the other repeat", lambda e: e.confirm_of == 0 and e.n != first)]
    for n in repeats:
        _release(loop, gates, n)
    c = _find(loop, "c", lambda e: e.description == "c")
    _release(loop, gates, c)  # 1.9: past the screen, not clear at once: confirming
    assert _state(loop).experiments[c].decision == "remeasure"
    fresh = _find(loop, "the fresh run of c's parent", lambda e: e.for_candidate == c)
    assert _state(loop).experiments[fresh].measure_commit == base.commit  # c's parent
    k = _find(loop, "k", lambda e: e.description == "k")
    _release(loop, gates, k)  # 1.5, clear at once: kept while c is being confirmed
    kept = _state(loop).experiments[k]
    assert kept.status == "keep" and kept.reason == "better"
    _release(loop, gates, fresh)  # 2.0: half a pair, no verdict of its own
    confirm = _find(loop, "c's confirmation, queued after k's row landed", lambda e: e.confirm_of == c)
    state = _state(loop)
    assert state.experiments[confirm].parent == base.commit  # on c's parent, not on k
    assert state.experiments[confirm].lane == state.experiments[fresh].lane  # the pair on one lane
    _release(loop, gates, confirm)  # 1.0: the pair gains 1.0 over c's parent, but k landed: rebase, not keep
    state = _state(loop)
    assert state.experiments[confirm].decision == "rebase" and state.best().n == k  # type: ignore[union-attr]
    ws = loop.workspace
    assert isinstance(ws, FakeWorkspace) and ws.head() == kept.commit  # the branch still holds k
    rebased = state.experiments[confirm].verdict.rebased_as
    assert rebased is not None and state.experiments[rebased].content == BOTH
    assert state.experiments[rebased].description == "c (rebased)" and state.experiments[rebased].agent != "judge"
    for n in range(rebased, rebased + 8):
        gates.setdefault(n, threading.Event()).set()
    thread.join(60)
    assert out and isinstance(out[0], StopReason)
    state = _state(loop)
    assert ws.files["train.py"] in (BOTH, K)
    keeps = [e for e in state.completed() if e.status == "keep" and e.measure_commit is None and not e.baseline]
    assert all(ws.is_ancestor(e.commit, ws.head()) for e in keeps)  # every kept commit is on the branch


def test_no_change_starts_before_the_baseline_repeats_measured_sigma(tmp_path: Path) -> None:
    """With a free lane and a draft ready, a change still waits for the baseline's repeats: judged before
    them it would meet σ = 0 (no estimate at all) and be kept on one run, unconfirmed."""
    _, score = scorer()
    loop, gates = lanes_loop(tmp_path, score, [(K, "k")], lanes=3, noise={"repeats": 2},
                             limits={"max_experiments": 2})
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(loop.run()), daemon=True)
    thread.start()
    _release(loop, gates, _find(loop, "the baseline", lambda e: e.baseline))
    first = _find(loop, "a repeat", lambda e: e.confirm_of == 0)
    second = _find(loop, "the other repeat", lambda e: e.confirm_of == 0 and e.n != first)
    wait_until(lambda: bool(_state(loop).drafts) or len(_state(loop).ordered()) > 3, "k drafted or started")
    assert all(e.confirm_of == 0 or e.baseline for e in _state(loop).ordered()), "a change started before σ"
    _release(loop, gates, first)
    assert all(e.confirm_of == 0 or e.baseline for e in _state(loop).ordered()), "a change started before σ"
    _release(loop, gates, second)
    k = _find(loop, "k, once σ is measured", lambda e: e.description == "k")
    _release(loop, gates, k)
    kept = _state(loop).experiments[k]
    assert kept.sigma is not None and kept.sigma > 0 and kept.reason == "better"
    for n in range(k + 1, k + 6):
        gates.setdefault(n, threading.Event()).set()
    thread.join(60)
    assert out and isinstance(out[0], StopReason)

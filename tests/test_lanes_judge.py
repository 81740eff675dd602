"""Two lanes with the noise-aware judge on (repeats, confirmations): issue 17's findings 1 and 2 through the
loop itself. Each run waits for its gate, so the test decides the order in which runs end."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator

from autoresearch.journal import JournalState
from autoresearch.loop import Loop, StopReason
from autoresearch.workspace import FakeWorkspace
from tests.loop_fakes import TARGET, lanes_loop, wait_until

C = TARGET.replace("LR = 0.5", "LR = 0.3")
K = TARGET.replace("WIDTH = 8", "WIDTH = 16")
BOTH = C.replace("WIDTH = 8", "WIDTH = 16")
# Each content's measurements, in the order its runs end: the baseline's σ is 0.02; C's first run (1.9) is
# past the screen but not clear at once; K's (1.5) is clear at once.
VALUES = {TARGET: [2.0, 2.02, 1.98, 2.0, 2.0, 2.0], C: [1.9, 1.0, 1.0], K: [1.5, 1.5, 1.5], BOTH: [1.0, 1.0, 1.0]}


def scorer() -> tuple[dict[str, Iterator[float]], object]:
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


def _release(loop: Loop, gates: dict[int, threading.Event], n: int) -> None:
    wait_until(lambda: n in _state(loop).experiments and _state(loop).experiments[n].phase == "running",
               f"#{n} running")
    gates.setdefault(n, threading.Event()).set()
    wait_until(lambda: _state(loop).experiments[n].done, f"#{n} recorded")


def test_a_confirmation_overtaken_by_another_lanes_keep_is_rebased_never_kept(tmp_path: object) -> None:
    _, score = scorer()
    loop, gates = lanes_loop(tmp_path, score, [(C, "c"), (K, "k")], noise={"repeats": 2},  # type: ignore[arg-type]
                             limits={"max_experiments": 3})
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(loop.run()), daemon=True)
    thread.start()
    _release(loop, gates, 0)  # the baseline alone; then both repeats at once, one per lane
    _release(loop, gates, 1)
    _release(loop, gates, 2)
    _release(loop, gates, 3)  # c: 1.9, confirming
    state = _state(loop)
    assert state.experiments[3].decision == "remeasure" and state.experiments[4].description == "k"
    wait_until(lambda: 5 in _state(loop).experiments, "the fresh run of c's parent queued")
    fresh = _state(loop).experiments[5]
    assert fresh.for_candidate == 3 and fresh.measure_commit == state.experiments[0].commit  # c's parent
    _release(loop, gates, 4)  # k: 1.5, clear at once: kept while c is being confirmed
    k = _state(loop).experiments[4]
    assert k.status == "keep" and k.reason == "better"
    _release(loop, gates, 5)  # the fresh run of c's parent (2.0): half a pair, no verdict of its own
    wait_until(lambda: 6 in _state(loop).experiments, "c's confirmation queued after k's row landed")
    state = _state(loop)
    six = state.experiments[6]
    assert six.confirm_of == 3 and six.parent == state.experiments[0].commit  # on c's parent, not on k
    assert six.lane == state.experiments[5].lane  # the pair's second run on the first one's lane
    _release(loop, gates, 6)  # c: 1.0; the pair gains 1.0 over c's parent, but k landed: rebase, not keep
    state = _state(loop)
    assert state.experiments[6].decision == "rebase" and state.best().n == 4  # type: ignore[union-attr]
    ws = loop.workspace
    assert isinstance(ws, FakeWorkspace) and ws.head() == k.commit  # the branch still holds k
    rebased = state.experiments[6].record.rebased_as
    assert rebased is not None and state.experiments[rebased].content == BOTH
    _release(loop, gates, rebased)  # both changes together: 1.0 against k's 1.5
    for n in range(rebased + 1, rebased + 8):
        gates.setdefault(n, threading.Event()).set()
    thread.join(60)
    assert out and isinstance(out[0], StopReason)
    state = _state(loop)
    best = state.best()
    assert best is not None and ws.files["train.py"] in (BOTH, K)
    kept = [e for e in state.recorded() if e.status == "keep" and e.measure_commit is None and not e.baseline]
    assert all(ws.is_ancestor(e.commit, ws.head()) for e in kept)  # every kept commit is on the branch
    ns = [e.n for e in state.ordered()]
    assert len(ns) == len(set(ns))

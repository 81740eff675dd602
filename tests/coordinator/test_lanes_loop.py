"""Two lanes with the fakes: runs ending in either order, stale runs rebased or discarded, kill -9 with
two runs in flight. Each run waits for its gate, so the test decides the order in which runs end."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from autoresearch.coordinator.loop import Loop, StopReason
from autoresearch.errors import GpuError
from autoresearch.git.workspace import FakeWorkspace
from autoresearch.journal.ledger import parse_results
from autoresearch.journal.store import Journal, JournalState
from autoresearch.judging import judge
from autoresearch.runners.base import OnStarted, RunOutcome, RunSpec
from tests.loop_fakes import TARGET, lanes_loop, wait_until

A = TARGET.replace("LR = 0.5", "LR = 0.4")  # 2.0 -> 1.5
B = TARGET.replace("WIDTH = 8", "WIDTH = 16")  # 2.0 -> 1.8 (B alone), 1.2 with A
C = TARGET.replace("LR = 0.5", "LR = 0.3")  # conflicts with A (same line); 1.4


def score(content: str) -> float:
    value = 2.0
    value -= 0.5 if "LR = 0.4" in content else 0.6 if "LR = 0.3" in content else 0.0
    value -= 0.3 if "WIDTH = 16" in content else 0.0
    value += 0.1 * content.count("# variant")
    return round(value, 6)


def _start(loop: Loop) -> tuple[threading.Thread, list[StopReason | BaseException]]:
    out: list[StopReason | BaseException] = []

    def run() -> None:
        try:
            out.append(loop.run())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _state(loop: Loop) -> JournalState:
    return loop.journal.load()


def _running(loop: Loop, *ns: int) -> None:
    wait_until(lambda: all(n in _state(loop).experiments and _state(loop).experiments[n].phase == "running"
                           for n in ns), f"runs {ns} in flight")


def _release(loop: Loop, gates: dict[int, threading.Event], n: int) -> None:
    gates.setdefault(n, threading.Event()).set()
    wait_until(lambda: n in _state(loop).experiments and _state(loop).experiments[n].done, f"#{n} recorded")


def _rows(tmp_path: Path) -> list[dict[str, str]]:
    return parse_results((tmp_path / "results.tsv").read_text())


def _two_in_flight(tmp_path: Path, script: list[tuple[str, str]], limit: int,
                   **settings: object) -> tuple[Loop, dict[int, threading.Event], threading.Thread, list[object]]:
    loop, gates = lanes_loop(tmp_path, score, script, limits={"max_experiments": limit}, **settings)
    thread, out = _start(loop)
    _release(loop, gates, 0)  # the baseline, alone (nothing can start before it)
    _running(loop, 1, 2)
    return loop, gates, thread, out  # type: ignore[return-value]


def test_two_lanes_first_proposed_finishes_first(tmp_path: Path) -> None:
    loop, gates, thread, out = _two_in_flight(tmp_path, [(A, "a"), (B.replace("16", "4"), "b")], 3)
    state = _state(loop)
    assert {state.experiments[1].lane, state.experiments[2].lane} == {0, 1}  # one run per lane at once
    _release(loop, gates, 1)  # a: 1.5 beats the baseline, its parent: keep
    _release(loop, gates, 2)  # b: 2.0, no better than its parent (the baseline) after a landed: stale
    thread.join(30)
    assert isinstance(out[0], StopReason) and out[0].reason == "max_experiments reached (3)"
    rows = _rows(tmp_path)
    assert [(r["status"], r["description"]) for r in rows] == [("keep", "baseline"), ("keep", "a"),
                                                                ("discard", "b [stale]")]
    state = _state(loop)
    assert state.experiments[2].verdict.lineage == "stale"
    ws = loop.workspace
    assert isinstance(ws, FakeWorkspace) and ws.head() == state.experiments[1].commit and ws.files["train.py"] == A


def test_two_lanes_second_proposed_finishes_first(tmp_path: Path) -> None:
    loop, gates, thread, out = _two_in_flight(tmp_path, [(A, "a"), (B.replace("16", "4"), "b")], 3)
    _release(loop, gates, 2)  # b ends first: 2.0 against the baseline 2.0, a plain discard
    _release(loop, gates, 1)  # a: its parent is still the best: keep
    thread.join(30)
    assert isinstance(out[0], StopReason) and out[0].exit_code == 0
    rows = _rows(tmp_path)
    # Rows in completion order; every phase record of a run names its lane.
    assert [(r["status"], r["description"]) for r in rows] == [("keep", "baseline"), ("discard", "b"),
                                                                ("keep", "a")]
    state = _state(loop)
    assert [e.n for e in state.completed()] == [0, 2, 1]
    assert state.experiments[2].verdict.lineage is None
    lanes = {rec["n"]: rec.get("lane") for rec in loop.journal.records() if rec.get("phase") == "running"}
    assert sorted(lanes) == [0, 1, 2] and None not in lanes.values()


def test_a_stale_improvement_is_rebased_queued_first_and_kept_only_on_its_own_measurement(tmp_path: Path) -> None:
    loop, gates, thread, out = _two_in_flight(tmp_path, [(A, "a"), (B, "b")], 5, proposals={"ahead": 1})
    _release(loop, gates, 1)  # a keeps (1.5); lane 0 takes the next draft (#3) at once
    _running(loop, 3)
    wait_until(lambda: len(_state(loop).drafts) >= 1, "a draft queued for the next free lane")
    _release(loop, gates, 2)  # b: 1.8 beats its parent (2.0) but a landed: rebased onto a as #4
    state = _state(loop)
    assert state.experiments[2].verdict.rebased_as == 4 and state.experiments[2].status == "discard"
    rebased = state.experiments[4]
    assert rebased.rebase_of == 2 and rebased.parent == state.experiments[1].commit
    assert rebased.content == TARGET.replace("LR = 0.5", "LR = 0.4").replace("WIDTH = 8", "WIDTH = 16")
    _running(loop, 4)  # queued first: it runs before the draft that was waiting
    assert _state(loop).drafts, "the queued draft waited behind the rebased commit"
    _release(loop, gates, 4)  # its own measurement (1.2) makes it a keep
    _release(loop, gates, 3)
    thread.join(30)
    assert isinstance(out[0], StopReason) and out[0].exit_code == 0
    rows = _rows(tmp_path)
    assert [r["status"] for r in rows] == ["keep", "keep", "discard", "keep", "discard"]
    assert rows[2]["description"] == "b [rebased as #4]" and rows[3]["description"] == "b (rebased)"
    assert _state(loop).best().n == 4  # type: ignore[union-attr]


def test_a_stale_improvement_that_conflicts_is_a_merge_conflict_discard(tmp_path: Path) -> None:
    loop, gates, thread, out = _two_in_flight(tmp_path, [(A, "a"), (C, "c")], 3)
    _release(loop, gates, 1)  # a keeps (1.5)
    _release(loop, gates, 2)  # c: 1.4 beats its parent, but edits the same line as a
    thread.join(30)
    assert isinstance(out[0], StopReason) and out[0].exit_code == 0
    rows = _rows(tmp_path)
    assert rows[2]["description"] == "c [merge-conflict]" and rows[2]["status"] == "discard"
    assert _state(loop).experiments[2].verdict.lineage == "merge-conflict"
    assert len(_state(loop).experiments) == 3  # nothing was rebased


def test_lineage_is_pure_and_a_rebase_is_never_a_keep() -> None:
    assert judge.lineage(1.5, 2.0, True, None, "min") == "current"
    assert judge.lineage(1.5, 2.0, False, True, "min") == "rebase"
    assert judge.lineage(1.5, 2.0, False, False, "min") == "merge-conflict"
    assert judge.lineage(2.0, 2.0, False, True, "min") == "stale"  # a tie is no gain
    assert judge.lineage(2.5, 2.0, False, True, "max") == "rebase"
    assert judge.lineage(1.9, 2.0, False, True, "min", threshold=0.2) == "stale"  # within noise
    assert judge.lineage(None, 2.0, False, True, "min") == "stale"
    verdicts = {judge.lineage(m, 2.0, p, g, "min") for m in (1.0, 2.0, 3.0) for p in (False,) for g in (True, False)}
    assert "current" not in verdicts  # a run whose parent is not the best is never judged as a keep


def test_kill_nine_with_two_runs_in_flight_then_resume(tmp_path: Path) -> None:
    """The journal as a kill -9 leaves it with two runs in flight (a byte copy taken then), resumed by a
    fresh daemon: both runs are reaped by their lane's runner and recorded once, the queued drafts run
    without asking the agent again, and the rows before the kill are kept as they were."""
    crashed_dir = tmp_path / "crashed"
    crashed_dir.mkdir()
    loop, _gates, thread, _ = _two_in_flight(crashed_dir, [(A, "a"), (B, "b"), (C, "c"), (A + "# d\n", "d")], 6,
                                            proposals={"ahead": 1})
    wait_until(lambda: len(_state(loop).drafts) == 2, "two drafts queued")
    resumed = tmp_path / "resumed"
    shutil.copytree(crashed_dir / ".git", resumed / ".git")  # the state at the kill, byte for byte
    shutil.copy(crashed_dir / "results.tsv", resumed / "results.tsv")
    rows_before = _rows(resumed)
    ws = loop.workspace
    assert isinstance(ws, FakeWorkspace)
    ws_after = FakeWorkspace(root=resumed, files=dict(ws.files), commits=dict(ws.commits), refs=dict(ws.refs),
                             branch=ws.branch)
    loop.stop_event.set()  # the old daemon is gone: its lanes end without touching the copy
    thread.join(30)

    again, gates2 = lanes_loop(resumed, score, [], ws=ws_after, limits={"max_experiments": 6},
                               proposals={"ahead": 1})
    for n in range(10):
        gates2.setdefault(n, threading.Event()).set()
    result = again.run()
    assert result.reason == "max_experiments reached (6)"
    state = _state(again)
    recorded = [rec["n"] for rec in Journal(resumed / ".git/autoresearch/journal.jsonl").records()
                if rec.get("phase") == "recorded"]
    assert sorted(recorded) == list(range(6))  # each once
    for n in (1, 2):
        assert state.experiments[n].cause == "interrupted" and state.experiments[n].status == "crash"
    reaped = [h["n"] for lane, runner in again.lanes for h in runner.reaped]  # type: ignore[attr-defined]
    assert sorted(reaped) == [1, 2]
    assert {state.experiments[n].proposed.draft for n in (3, 4)} == {2, 3}  # the queue survived
    assert all(c.n >= 5 for c in again.agent.contexts)  # type: ignore[attr-defined]  # never asked for #3, #4
    rows = _rows(resumed)
    assert rows[: len(rows_before)] == rows_before and len(rows) == 6
    assert [r["commit"] for r in rows] == [state.experiments[n].commit[:7] for n in state.completion]


def test_a_lane_whose_gpu_is_held_waits_while_the_other_lane_goes_on(tmp_path: Path) -> None:
    loop, gates = lanes_loop(tmp_path, score, [], limits={"max_experiments": 4})
    loop.wait_max_s = 0.05
    held = threading.Event()
    held.set()
    sick = loop.lanes[1][1]

    def gpu_probe() -> None:
        if held.is_set():
            raise GpuError("GPU 1 is still used by a process of a dead run (pid 4242)")

    sick.check = gpu_probe  # type: ignore[method-assign]
    real_run = sick.run

    def run(spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        gpu_probe()  # as a runner does before it starts anything
        return real_run(spec, on_started)

    sick.run = run  # type: ignore[method-assign]
    held.clear()  # the start-up wait passes: the GPU is held again when the runs begin
    thread, out = _start(loop)
    _running(loop, 0)  # the baseline, in lane 0: the start-up probe of every lane has passed
    held.set()
    _release(loop, gates, 0)
    _running(loop, 1)  # lane 0 trains #1 (held at its gate) ...
    wait_until(lambda: any(r.get("type") == "wait" and r.get("lane") == 1 for r in loop.journal.records()),
               "lane 1 waiting for its GPU")  # ... while lane 1 cannot start #2 and waits
    for n in range(1, 6):
        gates.setdefault(n, threading.Event()).set()
    thread.join(60)
    assert isinstance(out[0], StopReason) and out[0].exit_code == 0
    state = _state(loop)
    assert len(state.completed()) == 4 and all(e.status != "crash" for e in state.completed())
    waits = [r for r in loop.journal.records() if r.get("type") == "wait" and r.get("what") == "gpu"]
    assert waits and {w.get("lane") for w in waits} == {1}  # only the sick lane waited
    assert all(e.lane == 0 for e in state.completed() if e.n > 0)  # the healthy lane ran everything after


def test_the_report_shows_why_overtaken_runs_were_discarded(tmp_path: Path) -> None:
    from autoresearch.report.data import load_ledger
    from autoresearch.report.summary import _figures

    loop, gates, thread, _ = _two_in_flight(tmp_path, [(A, "a"), (C, "c")], 3)
    _release(loop, gates, 1)
    _release(loop, gates, 2)
    thread.join(30)
    ledger = load_ledger(tmp_path, "val_bpb", "min")
    assert [r.cause for r in ledger.runs] == ["ok", "ok", "merge-conflict"]
    assert "| Overtaken by another lane | 0 rebased and measured again, 0 stale, 1 merge-conflict |" in _figures(ledger)


def test_the_agent_drafts_up_to_its_concurrency_and_the_cost_cap_holds(tmp_path: Path) -> None:
    """Two conversations at a time while two lanes train; conversations in progress count toward
    max_cost_usd at the mean cost so far, so the spend stops within one round of the cap."""
    from autoresearch.agents.base import Proposal, ProposalContext, Usage

    loop, gates = lanes_loop(tmp_path, score, [], limits={"max_cost_usd": 2.0},
                             proposals={"ahead": 2, "concurrency": 2})
    for n in range(40):
        gates.setdefault(n, threading.Event()).set()
    lock, now, peak = threading.Lock(), [0], [0]

    def propose(ctx: ProposalContext) -> Proposal:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        threading.Event().wait(0.2)
        with lock:
            now[0] -= 1
        return Proposal(content=ctx.best_content + f"# variant {ctx.n}\n", description=f"v{ctx.n}",
                        usage=Usage(cost_usd=0.3))

    loop.agent.propose = propose  # type: ignore[method-assign]
    result = loop.run()
    assert result.reason.startswith("max_cost_usd reached")
    assert peak[0] == 2  # two conversations at once, never more
    state = _state(loop)
    spent = sum(u.cost_usd or 0.0 for u in state.all_usage())
    assert 2.0 <= spent <= 2.0 + 0.3 * 2  # in-flight drafts counted: at most one round over the cap
    assert not state.open() and not state.drafts  # every paid draft ran


def test_decide_judges_an_overtaken_run_against_its_own_parent() -> None:
    """The pure judge: a run whose parent is no longer the best is never a keep; it is rebased when it
    beats its parent beyond noise and merges, else a merge-conflict or stale discard."""
    policy = judge.Policy(direction="min", z=2.0, max_repeats=3)
    best = judge.Best(commit="b", metrics=(1.5,))

    def run(metric: float, merges: bool, parent: str = "p") -> judge.Candidate:
        return judge.Candidate(commit="r", cause="ok", metrics=(metric,), parent=parent, parent_metrics=(2.0,),
                               merges=merges)

    assert judge.decide(run(1.2, True), best, 0.0, policy).action == "rebase"
    assert judge.decide(run(1.2, True), best, 0.0, policy).status == "discard"  # a rebase is never a keep
    assert judge.decide(run(1.2, False), best, 0.0, policy).reason == "merge-conflict"
    assert judge.decide(run(2.0, True), best, 0.0, policy).reason == "stale"  # no gain over its parent
    assert judge.decide(run(1.9, True), best, 0.1, policy).reason == "stale"  # a gain within noise
    assert judge.decide(run(1.2, True, parent="b"), best, 0.0, policy).action == "keep"  # parent is the best
    crash = judge.Candidate(commit="r", cause="exit:1", metrics=(), parent="p", parent_metrics=(2.0,), merges=True)
    assert judge.decide(crash, best, 0.0, policy).action == "crash"
    assert judge.decide(run(1.2, True), best, 0.0, policy) == judge.decide(run(1.2, True), best, 0.0, policy)

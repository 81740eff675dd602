"""One writer: experiment numbers are allocated only where the proposal is journaled, under the journal's
lock (finding 5); evaluations and checks run outside the judging lock; every journal write is a typed,
strictly validated record."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autoresearch.agents.base import Proposal, ProposalContext
from autoresearch.coordinator.loop import Loop
from autoresearch.coordinator.scheduler import Job
from autoresearch.git.workspace import Checkout, FakeWorkspace
from autoresearch.journal.records import DraftRecord
from autoresearch.journal.store import Journal
from autoresearch.runners.base import CappedLog, OnStarted, RunOutcome, RunSpec
from tests.loop_fakes import TARGET, lanes_loop

A = TARGET.replace("LR = 0.5", "LR = 0.4")
B = TARGET.replace("WIDTH = 8", "WIDTH = 16")


def _score(content: str) -> float:
    return 2.0 - (0.5 if "LR = 0.4" in content else 0.0) - (0.3 if "WIDTH = 16" in content else 0.0)


def _with_best_and_draft(loop: Loop) -> None:
    """A recorded baseline, one open experiment on it (a lane trains it) and one queued draft."""
    ws, j = loop.workspace, loop.journal
    head = ws.branch_sha("autoresearch/t")
    assert head is not None
    j.proposed(0, parent=head, baseline=True, description="baseline", content=TARGET, agent="baseline", lane=0)
    j.phase(0, "committed", commit=head)
    j.phase(0, "finished", cause="ok", metric=2.0)
    j.phase(0, "recorded", status="keep", best_commit=head, best_metric=2.0, decision="keep", reason="first")
    j.proposed(1, parent=head, description="lr", content=A, agent="fake", lane=0)
    sha = ws.make_commit(head, "train.py", A, "lr", "2026-01-01T00:00:00+00:00")
    j.phase(1, "committed", commit=sha)
    j.append(DraftRecord(type="draft", id=0, parent=head, description="width", content=B))


def test_a_draft_taken_while_a_lane_journals_a_rebase_gets_its_own_number(tmp_path: Path) -> None:
    """The loop's thread picks a job from a state it loaded; a lane journals a rebased experiment before the
    loop takes the draft. Before the coordinator, the draft was numbered from the stale state and its
    ``proposed`` record reused the rebase's number, so the fold silently replaced the rebased experiment."""
    loop, _gates = lanes_loop(tmp_path, _score, [])
    _with_best_and_draft(loop)
    stale = loop.journal.load()
    exp, best = stale.experiments[1], stale.best()
    assert best is not None
    rebased = loop.coordinator.rebase(exp, best, A)  # what a lane's verdict does meanwhile
    assert rebased == 2
    slot = loop.pool.slots[1]
    loop.pool.start = lambda *_a, **_k: None  # type: ignore[method-assign]  # number only, run nothing
    loop._start_job(slot, Job("draft", draft=0), stale)
    proposed = [r for r in _raw(loop.journal) if r.get("phase") == "proposed"]
    numbers = [r["n"] for r in proposed]
    assert len(numbers) == len(set(numbers)), f"a number was reused: {numbers}"
    state = loop.journal.load()
    assert state.experiments[2].rebase_of == 1
    assert state.experiments[3].description == "width" and 0 not in state.drafts


def test_numbers_stay_unique_when_threads_race_for_them(tmp_path: Path) -> None:
    """Many threads each journal a new experiment at once (baselines, rebases, drafts taken): no number twice."""
    loop, _gates = lanes_loop(tmp_path, _score, [])
    _with_best_and_draft(loop)
    state = loop.journal.load()
    best = state.best()
    assert best is not None
    coordinator = loop.coordinator
    barrier = threading.Barrier(8)

    def propose(i: int) -> None:
        barrier.wait()
        coordinator.new_experiment(parent=best.commit, description=f"change {i}", content=f"X = {i}\n",
                                   agent="fake", lane=i % 2)

    threads = [threading.Thread(target=propose, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = [r["n"] for r in _raw(loop.journal) if r.get("phase") == "proposed"]
    assert sorted(numbers) == list(range(10))


def _raw(journal: Journal) -> list[dict[str, Any]]:
    return [json.loads(line) for line in journal.path.read_text().splitlines()]


class _Runner:
    """What a fake runner needs besides ``run``: nothing to check, nothing to reap."""

    def check(self) -> None:
        return None

    def reap(self, handle: dict[str, object]) -> bool:
        return False

    def reap_orphans(self) -> int:
        return 0


class _SlowEvaluator(_Runner):
    """A runner whose training ends at once and whose evaluation (or check) waits for the test's ``release``."""

    name = "slow-eval"

    def __init__(self, slow: str) -> None:
        self.slow = slow
        self.evaluating = threading.Event()
        self.release = threading.Event()

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        assert spec.snapshot is not None
        on_started({"kind": "fake", "n": spec.n})
        if spec.kind == self.slow:
            self.evaluating.set()
            while not self.release.wait(0.05):
                if spec.cancel.is_set():
                    return RunOutcome(cause="interrupted")
        if spec.kind in ("evaluate", "train"):
            value = _score((spec.snapshot / spec.target).read_text())
            with CappedLog(spec.log_path, spec.log_cap_bytes) as out:
                out.write(f"val_bpb: {value}\n".encode())
        return RunOutcome(cause="ok", exit_code=0)


@pytest.mark.parametrize("slow", ["evaluate", "check"])
def test_evaluations_and_checks_run_outside_the_judging_lock(tmp_path: Path, slow: str) -> None:
    """A multi-minute evaluator or check in one lane must not block the other lanes' verdicts: the judging
    lock is free while it runs (before the coordinator, ``Phases.advance`` held it around both)."""
    loop, _gates = lanes_loop(tmp_path, _score, [(A, "lr")], lanes=1, evaluate="python evaluate.py",
                              check="python check.py", limits={"max_experiments": 2})
    runner = _SlowEvaluator(slow)
    loop.lanes = [(loop.lanes[0][0], runner)]
    out: list[object] = []
    thread = threading.Thread(target=lambda: out.append(loop.run()), daemon=True)
    thread.start()
    try:
        assert runner.evaluating.wait(30), f"no {slow} started"
        lock = _judging_lock(loop)
        got = lock.acquire(timeout=5)
        assert got, "the judging lock is held while the evaluator runs"
        lock.release()
    finally:
        runner.release.set()
        thread.join(30)
    state = loop.journal.load()
    assert [(e.status, e.metric) for e in state.completed()] == [("keep", 2.0), ("keep", 1.5)]
    assert state.experiments[1].checks_ok


def _judging_lock(loop: Loop) -> threading.RLock:
    return loop.coordinator.lock


class _NoisyRunner(_Runner):
    """Trains at once: 2.0 − 0.05 per ``# good`` line, plus ±0.01 of noise drawn from the run's seed; runs
    take a few ms of seed-dependent time, so two lanes finish in varying order."""

    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        assert spec.snapshot is not None
        on_started({"kind": "fake", "n": spec.n})
        seed = int(spec.env["AUTORESEARCH_SEED"])
        spec.cancel.wait(0.005 * (seed * 7 % 5))
        content = (spec.snapshot / spec.target).read_text()
        value = 2.0 - 0.05 * content.count("# good") + 0.002 * ((seed * 7919) % 11 - 5)
        with CappedLog(spec.log_path, spec.log_cap_bytes) as out:
            out.write(f"val_bpb: {value:.6f}\n".encode())
        return RunOutcome(cause="ok", exit_code=0)


def _proposal(i: int) -> Callable[[ProposalContext], Proposal]:
    kind = "good" if i % 3 == 0 else "neutral"
    return lambda ctx: Proposal(content=f"# {kind} {i}\n" + ctx.best_content, description=f"{kind} {i}")


def _judged_lanes_run(tmp_path: Path) -> Loop:
    loop, _gates = lanes_loop(tmp_path, _score, [_proposal(i) for i in range(12)], lanes=2,
                              noise={"repeats": 2}, limits={"max_experiments": 8})
    loop.lanes = [(lane, _NoisyRunner(f"noisy{lane.index}")) for lane, _ in loop.lanes]
    assert loop.run().exit_code == 0
    return loop


def test_two_lanes_with_the_judge_on_number_once_and_confirm_pairs_on_one_lane(tmp_path: Path) -> None:
    """Lanes with the judge on (repeats and confirmations, not ``repeats = 0``): no number is journaled
    twice, every keep is on the branch, and a confirmation's candidate run is on the lane that ran the
    fresh run of the best for it."""
    loop = _judged_lanes_run(tmp_path)
    numbers = [r["n"] for r in _raw(loop.journal) if r.get("phase") == "proposed"]
    assert len(numbers) == len(set(numbers)), numbers
    state = loop.journal.load()
    head = loop.workspace.branch_sha("autoresearch/t")
    assert head is not None
    keeps = [e for e in state.completed() if e.status == "keep"]
    assert len(keeps) >= 2  # the baseline and at least one real gain
    assert all(loop.workspace.is_ancestor(e.commit, head) for e in keeps)
    fresh = [e for e in state.completed() if e.for_candidate is not None]
    pairs = [(run, next((e for e in state.ordered() if e.n > run.n and e.confirm_of == run.for_candidate
                         and e.for_candidate is None), None)) for run in fresh]
    checked = [(run.n, c.n, run.lane, c.lane) for run, c in pairs if c is not None]
    assert checked, "no confirmation pair ran"
    assert all(run_lane == c_lane for _r, _c, run_lane, c_lane in checked), checked


class _LockCheckingWorkspace(FakeWorkspace):
    """Records every ref, branch or checkout write made without the one writer lock held."""

    lock: threading.RLock | None = None
    unlocked: list[str]

    def _check(self, what: str) -> None:
        assert self.lock is not None
        if not self.lock._is_owned():  # type: ignore[attr-defined]  # CPython's RLock: held by this thread
            self.unlocked.append(f"{what} in {threading.current_thread().name}")

    def set_ref(self, ref: str, sha: str) -> None:
        self._check(f"set_ref {ref}")
        super().set_ref(ref, sha)

    def move_branch(self, branch: str, new: str, old: str | None) -> bool:
        self._check(f"move_branch {branch}")
        return super().move_branch(branch, new, old)

    def fast_forward(self, checkout: Checkout, sha: str) -> None:
        self._check("fast_forward")
        super().fast_forward(checkout, sha)

    def reset_checkout(self, checkout: Checkout, sha: str) -> None:
        self._check("reset_checkout")
        super().reset_checkout(checkout, sha)

    def reset_hard(self, sha: str) -> None:
        self._check("reset_hard")
        super().reset_hard(sha)


def test_every_ref_branch_and_checkout_write_holds_the_writer_lock(tmp_path: Path) -> None:
    """Finding 3: no git write from a lane thread races another (``index.lock``, a branch on an unconfirmed
    candidate). Lanes may only add objects (``make_commit``, a private index); every ref, branch move and
    checkout update happens under the one writer lock. Before the coordinator, lanes set experiment refs
    with no lock held."""
    ws = _LockCheckingWorkspace(root=tmp_path, files={"train.py": TARGET, "prepare.py": "X = 1\n"})
    ws.unlocked = []
    ws.create_branch("autoresearch/t")
    loop, _gates = lanes_loop(tmp_path, _score, [_proposal(i) for i in range(8)], lanes=2, ws=ws,
                              noise={"repeats": 1}, limits={"max_experiments": 5})
    loop.lanes = [(lane, _NoisyRunner(f"noisy{lane.index}")) for lane, _ in loop.lanes]
    ws.lock = loop.journal.lock
    assert loop.run().exit_code == 0
    assert len(ws.refs) > 5  # experiment refs and the branch were written
    assert ws.unlocked == []


def test_a_rebase_judged_again_after_a_crash_is_found_not_numbered_twice(tmp_path: Path) -> None:
    """The rebased experiment is journaled before the stale run's row; a kill in between judges the stale
    run again, and the coordinator finds the rebase it journaled (``rebase_of``) instead of a second one."""
    loop, _gates = lanes_loop(tmp_path, _score, [])
    _with_best_and_draft(loop)
    state = loop.journal.load()
    exp, best = state.experiments[1], state.best()
    assert best is not None
    first = loop.coordinator.rebase(exp, best, A)
    again = loop.coordinator.rebase(exp, best, A)
    assert first == again == 2
    assert [r["n"] for r in _raw(loop.journal) if r.get("phase") == "proposed"] == [0, 1, 2]
    rebased = loop.journal.load().experiments[2]
    assert rebased.rebase_of == 1 and rebased.lane is None and rebased.parent == best.commit

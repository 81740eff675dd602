"""The keep rule inside the loop, with the fakes: baseline repeats, confirmations, memory, simplicity,
checks, and a daemon killed during a confirmation run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoresearch.coordinator.loop import Loop
from autoresearch.journal.ledger import parse_results
from autoresearch.judging.decision import Policy, critical
from autoresearch.judging.noise import sigma
from autoresearch.runners.base import FakeRunner, OnStarted, RunOutcome, RunSpec
from tests.loop_fakes import TARGET, fake_loop, ok

CHANGED = TARGET.replace("0.5", "0.4")


def rows(tmp_path: Path) -> list[dict[str, str]]:
    return parse_results((tmp_path / "results.tsv").read_text())


def seeds(loop: Loop) -> list[str]:
    runner = loop.runner
    assert isinstance(runner, FakeRunner)
    return [s.env.get("AUTORESEARCH_SEED", "") for s in runner.specs if s.kind == "train"]


def test_sigma_from_repeats_and_a_keep_confirmed_against_a_fresh_best(tmp_path: Path) -> None:
    runs = [ok(2.0), ok(2.1), ok(1.9), ok(1.85), ok(1.95), ok(1.6)]
    loop = fake_loop(tmp_path, runs, [(CHANGED, "LR 0.4")], noise={"repeats": 2}, limits={"max_runs": 6})
    loop.run()
    got = [(r["status"], r["description"], r["val_bpb"]) for r in rows(tmp_path)]
    # One row per change: the baseline's three runs, then the candidate's two (gain 0.15 passed the
    # screen, 1 * 0.1 * sqrt(1 + 1/3), but was not clear at once, so the best ran again, then the candidate).
    # The fresh run of the best (1.95) is a re-measurement: in the journal, in no row.
    assert got == [
        ("keep", "baseline (mean of 3 runs)", "2.000000"),
        ("keep", "LR 0.4 (mean of 2 runs)", "1.725000"),
    ]
    assert seeds(loop) == ["0", "1", "2", "3", "4", "5"]  # every run on its own seed
    state = loop.journal.load()
    recorded = state.completed()
    assert recorded[3].sigma == pytest.approx(0.1)
    assert recorded[4].for_candidate == 3
    # The candidate's mean 1.725 against the best's fresh 1.95: gain 0.225, σ from the baseline's 4 runs.
    sigma5 = (sum((v - 1.9875) ** 2 for v in (2.0, 2.1, 1.9, 1.95)) / 3) ** 0.5
    # The confirmation looks at the pair alone (the selecting 1.85 does not count): the best's fresh 1.95
    # against the candidate's 1.6, a gain of 0.35 over t·σ·√2 (σ from the baseline's 4 runs, 3 dof).
    assert recorded[5].decision == "keep" and recorded[5].gain == pytest.approx(0.35)
    assert recorded[5].threshold == pytest.approx(critical(Policy(z=0.5), 3, look=1) * sigma5 * 2**0.5)
    assert recorded[5].confidence == pytest.approx(0.35 / sigma5)
    assert recorded[5].best_metric == pytest.approx(1.725)  # the best is the mean of its runs
    assert recorded[3].commit == recorded[5].commit
    # The confirmation pair joined the pooled estimate.
    pooled = (sum((v - 1.9875) ** 2 for v in (2.0, 2.1, 1.9, 1.95)) + 2 * 0.125**2) / 4
    assert sigma(state) == pytest.approx(pooled**0.5)
    assert "noise σ" in loop.status_text()
    assert loop.workspace.head() == recorded[5].commit


def test_a_first_run_beyond_noise_is_not_kept_when_the_fresh_best_catches_up(tmp_path: Path) -> None:
    """The load fell: the candidate's 1.5 beats the old best mean, but so does the best's fresh run; the
    pair shows no gain, so the confirmation stops at its first look."""
    runs = [ok(2.0), ok(2.1), ok(1.9), ok(1.5), ok(1.52), ok(1.53)]
    loop = fake_loop(tmp_path, runs, [(CHANGED, "LR 0.4")], noise={"repeats": 2}, limits={"max_runs": 6})
    loop.run()
    got = [(r["status"], r["description"], r["val_bpb"]) for r in rows(tmp_path)][1:]
    assert got == [("discard", "LR 0.4 [within noise] (mean of 2 runs)", "1.515000")]
    assert loop.workspace.head() == loop.journal.load().experiments[0].commit


def test_within_noise_is_discarded_at_once_or_after_its_last_pair(tmp_path: Path) -> None:
    runs = [ok(2.0), ok(2.1), ok(1.9), ok(1.95), ok(1.8), ok(2.0), ok(1.9), ok(2.0), ok(1.95)]
    proposals = [(CHANGED, "LR 0.4"), (TARGET.replace("0.5", "0.3"), "LR 0.3")]
    loop = fake_loop(tmp_path, runs, proposals, noise={"repeats": 2}, limits={"max_experiments": 3})
    loop.run()
    got = [(r["status"], r["description"]) for r in rows(tmp_path)]
    # 1.95: a gain of 0.05 under the screen. 1.8: past it; two pairs (2.0, 1.9) and (2.0, 1.95) gain 0.075
    # on average, under t·σ at the last look.
    assert got == [("keep", "baseline (mean of 3 runs)"), ("discard", "LR 0.4 [within noise]"),
                   ("discard", "LR 0.3 [within noise] (mean of 3 runs)")]
    assert len(loop.journal.load().completed()) == 9
    assert loop.workspace.head() == loop.journal.load().experiments[0].commit


def test_a_confirmation_given_up_is_explained_in_the_journal(tmp_path: Path) -> None:
    """The best's fresh runs crash three times: no pair can be made, so the judge stops asking and the
    journal says why (a ``confirm_drop`` naming the candidate), once."""
    crash = ("Traceback\n", "exit:1")
    runs = [ok(2.0), ok(2.1), ok(1.9), ok(1.85), crash, crash, crash, ok(1.9)]
    loop = fake_loop(tmp_path, runs, [(CHANGED, "LR 0.4")], noise={"repeats": 2}, limits={"max_runs": 8})
    loop.run()
    state = loop.journal.load()
    assert [e.for_candidate for e in state.completed()[4:7]] == [3, 3, 3]
    assert list(state.confirm_drops) == [3] and "gave up" in state.confirm_drops[3]
    drops = [r for r in loop.journal.path.read_text().splitlines() if '"confirm_drop"' in r]
    assert len(drops) == 1
    assert state.experiments[3].status == "discard"  # never kept: the branch stays on the baseline
    assert [(r["status"], r["description"]) for r in rows(tmp_path)] == [
        ("keep", "baseline (mean of 3 runs)"), ("discard", "LR 0.4 [confirmation given up]")]
    assert loop.workspace.head() == state.experiments[0].commit


def test_memory_cap_is_a_discard(tmp_path: Path) -> None:
    runs = [ok(2.0), ("val_bpb: 1.0\n", "ok", {"memory_gb": 50.0})]
    loop = fake_loop(tmp_path, runs, [(CHANGED, "bigger")], max_memory_gb=40.0, limits={"max_experiments": 2})
    loop.run()
    last = rows(tmp_path)[-1]
    assert (last["status"], last["description"], last["memory_gb"]) == ("discard", "bigger [memory]", "50.0")


def test_simplification_with_an_equal_result_is_kept(tmp_path: Path) -> None:
    shorter = "LR = 0.5\n"
    loop = fake_loop(tmp_path, [ok(2.0), ok(2.0)], [(shorter, "drop WIDTH")], limits={"max_experiments": 2})
    loop.run()
    assert rows(tmp_path)[-1]["status"] == "keep"
    assert rows(tmp_path)[-1]["description"] == "drop WIDTH [simplification]"
    assert loop.workspace.read(loop.workspace.head(), "train.py") == shorter


def test_failed_checks_discard_a_would_be_keep(tmp_path: Path) -> None:
    runs = [ok(2.0), ok(1.5), ("1 failed\n", "exit:1"), ok(1.4), ("all passed\n", "ok")]
    loop = fake_loop(tmp_path, runs, [(CHANGED, "LR 0.4"), (TARGET.replace("0.5", "0.3"), "LR 0.3")],
                     check="python3 -m pytest -q", limits={"max_experiments": 3})
    loop.run()
    got = [(r["status"], r["description"]) for r in rows(tmp_path)]
    assert got == [("keep", "baseline"), ("discard", "LR 0.4 [checks]"), ("keep", "LR 0.3")]
    runner = loop.runner
    assert isinstance(runner, FakeRunner)
    assert [s.kind for s in runner.specs] == ["train", "train", "check", "train", "check"]
    check = runner.specs[2]
    assert check.command == "python3 -m pytest -q"
    assert check.env["AUTORESEARCH_OUTPUT"].endswith("runs/1/output")


class Killed(BaseException):
    """Stands in for kill -9: the daemon is gone mid-run, the journal says `running`."""


class KillingRunner(FakeRunner):
    def __init__(self, script: list[Any], kill_at: int) -> None:
        super().__init__(script=script)
        self.kill_at = kill_at

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        if spec.n == self.kill_at:
            on_started({"kind": "fake", "n": spec.n})
            self.kill_at = -1
            raise Killed
        return super().run(spec, on_started)


def test_resume_after_a_kill_during_a_confirmation_run(tmp_path: Path) -> None:
    runs = [ok(2.0), ok(2.1), ok(1.9), ok(1.85), ok(1.95)]
    loop = fake_loop(tmp_path, runs, [(CHANGED, "LR 0.4")], noise={"repeats": 2}, limits={"max_runs": 7})
    runner = KillingRunner(list(runs), kill_at=5)
    loop.runner = runner
    with pytest.raises(Killed):
        loop.run()
    assert loop.journal.load().experiments[5].phase == "running"
    runner.script = [ok(1.6)]
    again = Loop(settings=loop.settings, session=loop.session, workspace=loop.workspace, runner=runner,
                 agent=loop.agent, idle_wait_s=lambda _k: 0.0)
    again.run()
    got = [(r["status"], r["description"], r["val_bpb"]) for r in rows(tmp_path)]
    # The interrupted confirmation was run again: the change's row has its two measured runs.
    assert got == [("keep", "baseline (mean of 3 runs)", "2.000000"), ("keep", "LR 0.4 (mean of 2 runs)", "1.725000")]
    assert runner.reaped == [{"kind": "fake", "n": 5}]
    state = loop.journal.load()
    assert state.experiments[5].status == "crash" and state.experiments[6].commit == state.experiments[3].commit


def test_the_evaluator_decides_and_a_far_claim_is_flagged(tmp_path: Path) -> None:
    runs = [ok(2.0), ok(2.0), ok(0.0001), ok(1.9), ok(1.5), ("Traceback\n", "exit:1")]
    loop = fake_loop(tmp_path, runs, [(CHANGED, "fake line"), (TARGET.replace("0.5", "0.3"), "LR 0.3")],
                     evaluate="python3 evaluate.py", limits={"max_experiments": 3})
    loop.run()
    got = [(r["status"], r["val_bpb"], r["description"]) for r in rows(tmp_path)]
    assert got == [("keep", "2.000000", "baseline"), ("keep", "1.900000", "fake line"),
                   ("crash", "0.000000", "LR 0.3 [eval:exit:1]")]
    state = loop.journal.load()
    assert state.experiments[1].claimed == 0.0001 and state.experiments[1].claim_flag is True
    assert state.experiments[0].claim_flag is False
    runner = loop.runner
    assert isinstance(runner, FakeRunner)
    evaluate = [s for s in runner.specs if s.kind == "evaluate"]
    assert [s.command for s in evaluate] == ["python3 evaluate.py"] * 3
    assert evaluate[0].eval_data is not None and "AUTORESEARCH_EVAL_DATA" in evaluate[0].env
    assert all("AUTORESEARCH_EVAL_DATA" not in s.env and s.eval_data is None for s in runner.specs if s.kind == "train")


def test_without_an_evaluator_stderr_and_implausible_lines_do_not_count(tmp_path: Path) -> None:
    runs = [ok(2.0), ("val_bpb: 2.5\n", "ok", {"stderr": "val_bpb: 0.0001\n"}), ok(1e-300), ok(-1e308)]
    loop = fake_loop(tmp_path, runs, limits={"max_experiments": 4})
    loop.run()
    got = [(r["status"], r["val_bpb"], r["description"].split("] ")[0]) for r in rows(tmp_path)[1:]]
    assert got == [("discard", "2.500000", "variant 1"), ("crash", "0.000000", "variant 2 [implausible]"),
                   ("crash", "0.000000", "variant 3 [implausible]")]


def test_status_shows_sigma_and_each_keeps_confidence(tmp_path: Path) -> None:
    from autoresearch.journal.status import summarize

    runs = [ok(2.0), ok(2.1), ok(1.9), ok(1.5), ok(2.0), ok(1.5)]
    loop = fake_loop(tmp_path, runs, [(CHANGED, "LR 0.4")], noise={"repeats": 2}, limits={"max_runs": 6})
    loop.run()
    s = summarize(loop.journal.load(), "min")
    assert s["sigma"] == pytest.approx((0.02 / 4) ** 0.5) and s["best_mean"] == pytest.approx(1.5)
    sigma5 = (0.02 / 3) ** 0.5  # the baseline's 4 runs, before the candidate's pair
    assert s["keeps_confidence"] == [{"n": 3, "confidence": pytest.approx(0.5 / sigma5), "reason": "better"}]
    assert (s["experiments"], s["keep"], s["run_count"], s["remeasurements"]) == (2, 2, 6, 4)


def test_an_evaluation_stopped_midway_is_run_again_without_a_row(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0), ("", "interrupted"), ok(1.9)], evaluate="python3 evaluate.py",
                     limits={"max_experiments": 1})
    loop.run()
    assert [(r["status"], r["val_bpb"]) for r in rows(tmp_path)] == [("keep", "1.900000")]
    runner = loop.runner
    assert isinstance(runner, FakeRunner)
    assert [s.kind for s in runner.specs] == ["train", "evaluate", "evaluate"]

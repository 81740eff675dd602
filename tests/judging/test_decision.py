"""The decision core over plain facts (no git, threads, clock or journal): issue 17's findings 1 and 2,
the sequential rule, and the statistics under it."""

from __future__ import annotations

import dataclasses
import random

import pytest

from autoresearch.judging import research
from autoresearch.judging.decision import Best, Candidate, Policy, critical, decide
from autoresearch.judging.research import Facts, Run
from autoresearch.judging.stats import Noise, crossing, pooled_sigma, sequential_bound, t_cdf, t_quantile

POLICY = Policy(direction="min", z=1.0, max_repeats=3, alpha=0.01)  # strict: the tests choose clear margins


def base_runs() -> list[Run]:
    """A baseline P measured three times (σ 0.1, 2 dof)."""
    repeat = {"decision": "keep", "status": "keep", "reason": "repeat", "confirm_of": 0}
    return [Run(0, "P", 2.0, decision="keep", status="keep", reason="first", baseline=True, description="baseline"),
            Run(1, "P", 2.1, **repeat), Run(2, "P", 1.9, **repeat)]  # type: ignore[arg-type]


def test_t_quantiles_and_cdf_match_the_tables() -> None:
    assert t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-5)
    assert t_quantile(0.975, 10) == pytest.approx(2.228139, abs=1e-5)
    assert t_quantile(0.995, 1) == pytest.approx(63.65674, abs=1e-4)
    assert t_quantile(0.975, float("inf")) == pytest.approx(1.959964, abs=1e-5)
    assert t_quantile(0.01, 5) == pytest.approx(-3.36493, abs=1e-4)
    assert 1 - t_cdf(2.0, 2) == pytest.approx(0.0917517, abs=1e-6)  # the "about 9 %"
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)


def test_sigma_leaves_out_one_cold_run_but_not_ordinary_spread() -> None:
    # The demo's cold first run: 3.436 against repeats of 2.87-2.97.
    noisy = pooled_sigma([[3.436, 2.87, 2.97, 2.93], [1.0, 1.05]])
    assert noisy.dropped == 0 and noisy.sigma < 0.06 and noisy.dof == 3
    plain = pooled_sigma([[1.0, 1.1, 0.9, 1.05]])
    assert plain.dropped is None and plain.dof == 3
    assert pooled_sigma([[1.0]]) == Noise(0.0, 0)
    assert pooled_sigma([[1.0, 5.0]]).dropped is None  # a pair cannot tell which run is odd


def test_finding_1_a_confirmation_never_resets_the_branch_over_another_lanes_keep() -> None:
    """C made on P is confirming; meanwhile lane 1 keeps K. C's confirmation pair is measured against
    its own parent P, and C confirmed becomes a rebase onto K, never a keep that would drop K."""
    runs = [
        *base_runs(),
        Run(3, "C", 1.5, decision="remeasure", status="discard", reason="confirming a keep", parent="P", lane=0,
            description="C"),
        Run(4, "K", 1.2, decision="keep", status="keep", reason="better", parent="P", lane=1, description="K"),
    ]
    queue = research.pending(runs, repeats=2)
    assert [(m.commit, m.for_candidate) for m in queue] == [("P", 3)]  # the fresh run is of C's parent P
    runs.append(Run(5, "P", 2.0, decision="discard", status="discard", reason="reference", lane=0,
                    for_candidate=3, confirm_of=0, description="confirm: baseline"))
    queue = research.pending(runs, repeats=2)
    assert [(m.commit, m.lane, m.parent) for m in queue] == [("C", 0, "P")]  # same lane, on P
    confirm = Run(6, "C", 1.2, done=False, parent="P", lane=0, confirm_of=3, description="confirm: C")
    merges = research.verdict([*runs, confirm], confirm, Facts(merges=True), POLICY)
    assert merges.action == "rebase" and merges.status == "discard"  # re-applied onto K, K stays
    conflict = research.verdict([*runs, confirm], confirm, Facts(merges=False), POLICY)
    assert (conflict.action, conflict.reason) == ("discard", "merge-conflict")
    # Without the other lane's keep, the same measurements keep C.
    alone = [r for r in runs if r.commit != "K"]
    assert research.verdict([*alone, confirm], confirm, Facts(), POLICY).action == "keep"


def test_finding_2_a_pending_confirmation_survives_other_lanes_rows() -> None:
    runs = [
        *base_runs(),
        Run(3, "C", 1.5, decision="remeasure", status="discard", reason="confirming a keep", parent="P", lane=0,
            description="C"),
        Run(4, "D", 2.3, decision="discard", status="discard", reason="not better", parent="P", lane=1),
        Run(5, "E", 2.2, decision="discard", status="discard", reason="not better", parent="P", lane=2),
    ]
    assert [m.for_candidate for m in research.pending(runs, repeats=2)] == [3]
    # Two candidates confirming at once: one pending measurement each, oldest first.
    runs.append(Run(6, "F", 1.6, decision="remeasure", status="discard", reason="confirming a keep", parent="P",
                    lane=1, description="F"))
    assert [m.for_candidate for m in research.pending(runs, repeats=2)] == [3, 6]
    # A candidate with a run in flight has nothing pending (no second copy of its run).
    runs.append(Run(7, "P", None, done=False, lane=2, for_candidate=6, confirm_of=0))
    assert [m.for_candidate for m in research.pending(runs, repeats=2)] == [3]


def test_baseline_repeats_are_queued_together() -> None:
    runs = base_runs()[:1]
    queue = research.pending(runs, repeats=2)
    assert [(m.commit, m.of) for m in queue] == [("P", 0), ("P", 0)]
    runs.append(Run(1, "P", None, done=False, confirm_of=0))
    assert len(research.pending(runs, repeats=2)) == 1


def test_the_selecting_measurement_does_not_count_in_the_confirmation() -> None:
    best = Best("P", (2.0, 2.1, 1.9))
    noise = Noise(0.1, 30)
    # A lucky first run (1.0) and two pairs that show no gain: discarded, whatever the first run said.
    lucky = Candidate("C", "ok", (1.0, 2.0), parent="P", pairs=((2.0, 2.02),))
    assert decide(lucky, best, noise, POLICY).action == "discard"
    # The same pair after an ordinary first run that passed the screen: the same verdict.
    plain = Candidate("C", "ok", (1.8, 2.0), parent="P", pairs=((2.0, 2.02),))
    assert decide(plain, best, noise, POLICY).action == decide(lucky, best, noise, POLICY).action


def test_sequential_looks_stop_early_when_clear() -> None:
    best = Best("P", (2.0, 2.1, 1.9))
    many = Noise(0.1, 60)
    assert decide(Candidate("C", "ok", (1.0,), parent="P"), best, many, POLICY).reason == "better"  # 10σ: at once
    assert decide(Candidate("C", "ok", (1.85,), parent="P"), best, many, POLICY).action == "remeasure"
    assert decide(Candidate("C", "ok", (1.95,), parent="P"), best, many, POLICY).action == "discard"  # screen
    one_pair = Candidate("C", "ok", (1.85, 1.6), parent="P", pairs=((2.0, 1.6),))
    assert decide(one_pair, best, many, POLICY).action == "keep"  # 0.4 > t·σ·√2
    unclear = Candidate("C", "ok", (1.85, 1.9), parent="P", pairs=((2.0, 1.9),))
    assert decide(unclear, best, many, POLICY).action == "remeasure"
    last = Candidate("C", "ok", (1.85, 1.9, 1.9), parent="P", pairs=((2.0, 1.9), (2.0, 1.9)))
    assert decide(last, best, many, POLICY).action == "discard"  # the last look
    # Few dof: the same 4σ first run is no longer clear (t with 2 dof has heavy tails).
    assert decide(Candidate("C", "ok", (1.55,), parent="P"), best, Noise(0.1, 2), POLICY).action == "remeasure"
    assert critical(POLICY, 2) > critical(POLICY, 60)


def test_simplifications_cannot_drift_away_from_the_last_gain() -> None:
    noise = Noise(0.1, 30)
    # Each simplification alone is within σ of the best, but the chain has drifted 0.15 from the anchor.
    best = Best("S1", (2.05,), lines=90, anchor=1.95)
    worse = Candidate("S2", "ok", (2.1,), lines=80, parent="S1")
    assert decide(worse, best, noise, POLICY).action == "discard"
    fine = Candidate("S2", "ok", (2.0,), lines=80, parent="S1")
    assert decide(fine, best, noise, POLICY).reason == "simplification"


def test_no_op_changes_are_kept_at_most_alpha_of_the_time() -> None:
    """Monte Carlo through the full sequence of looks (pairs drawn fresh): the false-keep rate of a change
    with no effect stays under alpha, with σ estimated from few runs."""
    rng = random.Random(7)
    keeps, trials = 0, 4000
    for _ in range(trials):
        base = [rng.gauss(0.0, 1.0) for _ in range(5)]
        mean = sum(base) / 5
        est = Noise((sum((v - mean) ** 2 for v in base) / 4) ** 0.5, 4)
        best = Best("P", tuple(base))
        metrics: list[float] = [rng.gauss(0.0, 1.0)]
        pairs: list[tuple[float, float]] = []
        while True:
            v = decide(Candidate("C", "ok", tuple(metrics), parent="P", pairs=tuple(pairs)), best, est,
                       Policy(bounds=(-1e9, 1e9)))
            if v.action != "remeasure":
                keeps += v.action == "keep"
                break
            pairs.append((rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)))
            metrics.append(pairs[-1][1])
    alpha = Policy().alpha
    assert keeps / trials <= alpha + 3 * (alpha / trials) ** 0.5


def test_the_best_is_compared_without_the_run_that_selected_it() -> None:
    runs = [
        *base_runs(),
        Run(3, "K", 1.0, decision="remeasure", status="discard", reason="confirming a keep", parent="P"),
        Run(4, "P", 2.0, decision="keep", status="keep", reason="repeat", for_candidate=3, confirm_of=0),
        Run(5, "K", 1.4, decision="keep", status="keep", reason="better", parent="P", confirm_of=3),
    ]
    assert research.reference(runs, "K") == (1.4,)  # the lucky 1.0 selected K: not its level
    assert research.reference(runs, "P") == (2.0, 2.1, 1.9, 2.0)  # the baseline's runs all count
    assert research.reference(runs[:4], "K") == (1.0,)  # alone, it is all there is
    new = Run(6, "N", 1.2, done=False, parent="K")
    v = research.verdict([*runs, new], new, Facts(), POLICY)
    assert v.gain == pytest.approx(0.2)


def test_a_parent_that_keeps_failing_is_not_asked_for_forever() -> None:
    runs = [*base_runs(), Run(3, "C", 1.5, decision="remeasure", status="discard", reason="confirming a keep",
                              parent="P")]
    for n in range(4, 4 + research.MAX_FAILED_REFERENCES):
        assert [m.for_candidate for m in research.pending(runs, repeats=2)] == [3]
        assert research.given_up(runs) == []
        runs.append(Run(n, "P", None, decision="crash", status="crash", cause="exit:1", for_candidate=3, confirm_of=0))
    assert research.pending(runs, repeats=2) == ()
    assert research.given_up(runs) == [3]  # the shell journals why (a confirm_drop record)


def test_with_one_look_the_first_run_decides_with_all_of_alpha() -> None:
    one = Policy(max_repeats=1, alpha=0.01)
    best, noise = Best("P", (2.0, 2.1, 1.9)), Noise(0.1, 60)
    assert critical(one, 60) < critical(Policy(max_repeats=3, alpha=0.01), 60)
    assert decide(Candidate("C", "ok", (1.5,), parent="P"), best, noise, one).action == "keep"
    assert decide(Candidate("C", "ok", (1.85,), parent="P"), best, noise, one).action == "discard"


def test_no_sigma_yet_with_repeats_in_flight_confirms_instead_of_keeping() -> None:
    """With lanes, a change can finish before the baseline's repeats: σ is due, so no keep on the seed's rule."""
    run, best = Candidate("C", "ok", (0.9,), parent="P"), Best("P", (1.0,))
    assert decide(run, best, Noise(0.0, 0), Policy()).action == "keep"  # noise.repeats = 0: the seed's rule
    due = decide(dataclasses.replace(run, noise_due=True), best, Noise(0.0, 0), Policy())
    assert (due.action, due.reason) == ("remeasure", "confirming a keep")


def test_a_normal_run_among_few_is_rarely_called_an_outlier() -> None:
    """At 2 dof the leave-one-out residual is Cauchy-like: a 5σ cut alone dropped a normal run in 37 % of
    three-run baselines, leaving σ from the two closest runs."""
    rng = random.Random(7)
    drops = sum(pooled_sigma([[rng.gauss(0, 1) for _ in range(3)]]).dropped is not None for _ in range(4000))
    assert drops / 4000 < 0.07


def test_the_confirmation_boundary_is_pococks_not_bonferronis() -> None:
    """One-sided 0.025 over K looks: Pocock's tables give 2.178 (K = 2) and 2.413 (K = 5); Bonferroni's
    2.241 and 2.576 were conservative (the looks share pairs)."""
    assert sequential_bound(0.025, 1) == pytest.approx(1.960, abs=1e-3)
    assert sequential_bound(0.025, 2) == pytest.approx(2.178, abs=2e-3)
    assert 2.413 <= sequential_bound(0.025, 5) < 2.42  # the grid errs on the safe side
    assert crossing(sequential_bound(0.1, 3), 3) == pytest.approx(0.1, abs=1e-3)


def test_no_change_starts_while_the_baseline_repeats_are_owed_or_running() -> None:
    first = [Run(0, "P", 2.0, decision="keep", status="keep", reason="first", baseline=True, description="baseline")]
    assert research.calibrating(first, repeats=2)  # both repeats owed
    assert not research.calibrating(first, repeats=0)  # no repeats asked for: nothing to wait for
    running = [*first, Run(1, "P", None, done=False, confirm_of=0), Run(2, "P", None, done=False, confirm_of=0)]
    assert research.calibrating(running, repeats=2)  # none owed, but not measured yet
    assert not research.calibrating(base_runs(), repeats=2)  # σ measured: changes may start

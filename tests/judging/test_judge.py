"""The keep rule, on its own: no git, no runner, no journal."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from autoresearch.judging.decision import critical
from autoresearch.judging.judge import Best, Candidate, Policy, decide

POLICY = Policy(direction="min", z=2.0, max_repeats=3, bounds=(1e-6, 1e6), max_memory_gb=40.0, max_added_lines=5,
                confirm_keeps=False)
BEST = Best(commit="b", metrics=(1.00, 1.02, 0.98), memory_gb=10.0, lines=100)


def run(*metrics: float, cause: str = "ok", **kw: object) -> Candidate:
    fields: dict[str, object] = {"commit": "c", "cause": cause, "metrics": metrics, "memory_gb": 10.0, "lines": 100}
    return Candidate(**{**fields, **kw})  # type: ignore[arg-type]


def test_strict_and_direction_aware_without_noise() -> None:
    assert decide(run(1.0), BEST, 0.0, POLICY).status == "discard"  # a tie is not a gain
    assert decide(run(0.99), BEST, 0.0, POLICY).status == "keep"
    maxed = Policy(direction="max")
    assert decide(run(1.1), BEST, 0.0, maxed).action == "keep"
    assert decide(run(0.9), BEST, 0.0, maxed).action == "discard"
    assert decide(run(5.0), None, 0.0, POLICY).reason == "first"
    assert decide(run(), BEST, 0.0, POLICY).action == "crash"
    assert decide(run(0.1, cause="timeout"), BEST, 0.0, POLICY).reason == "timeout"


def test_gain_beyond_z_sigma_keeps_with_its_confidence() -> None:
    v = decide(run(0.9), BEST, 0.02, POLICY)
    assert v.action == "keep" and v.reason == "better"
    assert v.gain is not None and abs(v.gain - 0.1) < 1e-12
    # t(1 - alpha/looks)·σ·√(1/k + 1/m): one candidate run against the best's three (a bare σ: a normal).
    assert v.threshold == pytest.approx(critical(POLICY, 1_000_000) * 0.02 * (1 + 1 / 3) ** 0.5)
    assert v.confidence is not None and abs(v.confidence - 5.0) < 1e-9


def test_a_keep_is_confirmed_on_fresh_pairs_of_the_best_and_the_candidate() -> None:
    policy = dataclasses.replace(POLICY, confirm_keeps=True)
    first = decide(run(0.95), BEST, 0.02, policy)  # gain 0.05: past the screen, not clear at once
    assert (first.action, first.reason, first.status) == ("remeasure", "confirming a keep", "discard")
    # The pair: the best's fresh run, then the candidate's (the load fell: the best now measures 0.91).
    assert decide(run(0.95, 0.905, pairs=((0.91, 0.905),)), BEST, 0.02, policy).action == "remeasure"
    assert decide(run(0.95, 0.8, pairs=((0.91, 0.8),)), BEST, 0.02, policy).action == "keep"  # 0.11 > t·σ·√2
    assert decide(run(0.95, 0.95, pairs=((0.91, 0.95),)), BEST, 0.02, policy).action == "discard"  # futile
    assert decide(run(0.9), BEST, 0.0, policy).action == "keep"  # no noise estimate: the seed's rule


def test_without_confirmation_the_screen_decides_at_once() -> None:
    assert decide(run(0.95), BEST, 0.02, POLICY).action == "keep"  # gain 0.05 > z·σ·√(4/3)
    last = decide(run(0.99), BEST, 0.02, POLICY)
    assert (last.action, last.reason, last.status) == ("discard", "within noise", "discard")


def test_implausible_memory_and_checks() -> None:
    assert decide(run(1e-300), BEST, 0.02, POLICY).reason == "implausible"
    assert decide(run(-1e308), BEST, 0.02, POLICY).reason == "implausible"
    assert decide(run(2e6), BEST, 0.02, POLICY).action == "crash"
    over = decide(run(0.5, memory_gb=41.0), BEST, 0.02, POLICY)
    assert (over.action, over.reason) == ("discard", "memory")
    failed = decide(run(0.5, checks_ok=False), BEST, 0.02, POLICY)
    assert (failed.action, failed.reason) == ("discard", "checks")
    assert decide(run(0.5, checks_ok=True), BEST, 0.02, POLICY).action == "keep"


def test_lower_memory_wins_within_noise_and_higher_memory_loses() -> None:
    assert decide(run(1.01, memory_gb=5.0), BEST, 0.02, POLICY).reason == "less memory"
    assert decide(run(1.05, memory_gb=5.0), BEST, 0.02, POLICY).action == "discard"  # worse by more than σ
    more = decide(run(0.99, memory_gb=20.0), BEST, 0.02, POLICY)
    assert (more.action, more.reason) == ("discard", "within noise, more memory")
    assert decide(run(0.9, memory_gb=20.0), BEST, 0.02, POLICY).action == "keep"  # a clear gain may cost memory


def test_simplicity() -> None:
    simpler = decide(run(1.01, lines=90), BEST, 0.02, POLICY)
    assert (simpler.action, simpler.reason) == ("keep", "simplification")
    assert decide(run(1.0, lines=90), BEST, 0.0, POLICY).reason == "simplification"  # equal and shorter
    assert decide(run(1.05, lines=90), BEST, 0.02, POLICY).action == "discard"
    bloated = decide(run(0.99, lines=110), BEST, 0.02, POLICY)
    assert (bloated.action, bloated.reason) == ("discard", "within noise, adds too many lines")
    assert decide(run(0.9, lines=110), BEST, 0.02, POLICY).action == "keep"


def test_interrupted_confirmation_is_run_again_and_recorded_as_a_crash() -> None:
    v = decide(run(cause="interrupted", confirmation=True), BEST, 0.02, POLICY)
    assert v.action == "remeasure" and v.status == "crash"
    assert decide(run(cause="exit:1", confirmation=True), BEST, 0.02, POLICY).action == "crash"


def test_properties_over_a_grid() -> None:
    """Same inputs, same verdict; a run equal to the best is kept only when shorter or leaner; a keep
    beyond noise always has a positive gain."""
    values = (0.9, 0.97, 1.0, 1.01, 1.1)
    for value, sigma, lines, memory in itertools.product(values, (0.0, 0.02), (90, 100, 120), (5.0, 10.0, 20.0)):
        candidate = run(value, lines=lines, memory_gb=memory)
        v = decide(candidate, BEST, sigma, POLICY)
        assert v == decide(candidate, BEST, sigma, POLICY)
        if value == BEST.mean and v.action == "keep":
            assert lines < BEST.lines or memory < BEST.memory_gb
        if v.reason == "better":
            assert v.gain is not None and v.gain > 0
        if v.action == "keep":
            assert v.gain is not None and v.gain >= -sigma

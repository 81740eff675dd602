"""The keep rule, on its own: no git, no runner, no journal."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from autoresearch.judge import Best, Candidate, Policy, decide

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
    # z·σ·√(1/k + 1/m): one candidate run against the best's three.
    assert v.threshold == pytest.approx(2 * 0.02 * (1 + 1 / 3) ** 0.5)
    assert v.confidence is not None and abs(v.confidence - 5.0) < 1e-9


def test_a_keep_is_confirmed_against_a_fresh_run_of_the_best() -> None:
    policy = dataclasses.replace(POLICY, confirm_keeps=True)
    first = decide(run(0.9), BEST, 0.02, policy)
    assert (first.action, first.reason, first.status) == ("remeasure", "confirming a keep", "discard")
    # Confirmed against the best's fresh run (the load fell: the best now measures 0.91).
    fresh = Best(commit="b", metrics=(0.91,), memory_gb=10.0, lines=100)
    assert decide(run(0.9, 0.89), fresh, 0.02, policy).action == "remeasure"  # gain 0.015: within noise
    assert decide(run(0.9, 0.8), fresh, 0.02, policy).action == "keep"  # gain 0.06 > 2 * 0.02 * sqrt(1/2 + 1)
    assert decide(run(0.9), BEST, 0.0, policy).action == "keep"  # no noise estimate: the seed's rule


def test_gain_within_noise_is_remeasured_then_the_mean_decides() -> None:
    first = decide(run(0.97), BEST, 0.02, POLICY)  # gain 0.03 <= 2 * 0.02
    assert first.action == "remeasure" and first.status == "discard"
    # The confirmation came back at 0.95: mean 0.96, gain 0.04 > 2 * 0.02 / sqrt(2).
    assert decide(run(0.97, 0.95), BEST, 0.02, POLICY).action == "keep"
    # ... or at 1.01: mean 0.99, still within noise, one more measurement allowed.
    assert decide(run(0.97, 1.01), BEST, 0.02, POLICY).action == "remeasure"
    # At max_repeats measurements the candidate is discarded.
    last = decide(run(0.97, 1.01, 0.99), BEST, 0.02, POLICY)
    assert last.action == "discard" and last.reason == "within noise"


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

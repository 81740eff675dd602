"""The offline Optuna sweep: only constants change, the rest of the file stays byte-identical."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch.agents.base import HistoryEntry, ProposalContext
from autoresearch.agents.constants import find_constants, format_value, rewrite
from autoresearch.agents.offline import OfflineAgent
from autoresearch.errors import ProposalRejected
from autoresearch.ops.config import OfflineSettings

SOURCE = '''"""A model."""
import math  # LR = 99 in a comment is not a constant

DEPTH = 4          # layers
LEARNING_RATE = 3e-3  # AdamW
DROPOUT = 0.0
NAME = "byte-lm"
BETAS = (0.9, 0.95)
lower_case = 7
NEG: float = -1.5


def f(x):
    LOCAL = 5
    return x * LOCAL * math.pi
'''


def _ctx(
    content: str, history: tuple[HistoryEntry, ...] = (), state: dict | None = None, n: int = 1
) -> ProposalContext:
    return ProposalContext(n=n, repo=Path("."), target="train.py", readonly=(), metric="val_bpb", direction="min",
                           best_commit="abc", best_content=content, best_metric=2.0, history=history,
                           last_crash_log=None, crash_streak=0, stale_streak=0, agent_state=state or {})


def test_find_constants_only_module_level_numbers() -> None:
    found = find_constants(SOURCE)
    assert {k: c.value for k, c in found.items()} == {"DEPTH": 4, "LEARNING_RATE": 3e-3, "DROPOUT": 0.0, "NEG": -1.5}


def test_rewrite_is_byte_identical_elsewhere() -> None:
    out = rewrite(SOURCE, {"DEPTH": "5", "LEARNING_RATE": "0.0015"})
    assert out == SOURCE.replace("DEPTH = 4 ", "DEPTH = 5 ").replace("= 3e-3  #", "= 0.0015  #")


def test_format_keeps_types() -> None:
    assert format_value(5.0, 3e-3) == "5.0"
    assert format_value(0.00123456, 3e-3) == "0.00123"
    assert format_value(7.6, 4) == "8"


def test_proposals_change_only_constants_and_describe_themselves() -> None:
    agent = OfflineAgent(OfflineSettings(seed=1))
    state: dict = {}
    history: list[HistoryEntry] = []
    seen = set()
    for n in range(1, 9):
        proposal = agent.propose(_ctx(SOURCE, tuple(history), state, n))
        state = proposal.agent_state or state
        before, after = SOURCE.splitlines(), proposal.content.splitlines()
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert 1 <= len(changed) <= 2
        for i in changed:
            name = before[i].split("=")[0].strip().split(":")[0]
            assert name in {"DEPTH", "LEARNING_RATE", "DROPOUT", "NEG"}
            assert before[i].split("#")[1:] == after[i].split("#")[1:]  # comments intact
        assert " -> " in proposal.description
        compile(proposal.content, "train.py", "exec")
        assert proposal.content not in seen
        seen.add(proposal.content)
        history.append(HistoryEntry(n, f"c{n}", "discard", 2.0 + n / 10, proposal.description, "ok",
                                    {**proposal.meta, "content_sha256": None}))


def test_study_resumes_deterministically_from_history() -> None:
    agent = OfflineAgent(OfflineSettings(seed=3))
    first = agent.propose(_ctx(SOURCE))
    history = (HistoryEntry(1, "c1", "keep", 1.9, first.description, "ok", first.meta),)
    a = agent.propose(_ctx(SOURCE, history, first.agent_state, 2))
    b = OfflineAgent(OfflineSettings(seed=3)).propose(_ctx(SOURCE, history, first.agent_state, 2))
    assert a.content == b.content  # a restarted daemon asks the same question


def test_excluded_and_missing_constants() -> None:
    agent = OfflineAgent(OfflineSettings(exclude=["DEPTH", "LEARNING_RATE", "DROPOUT", "NEG"]))
    with pytest.raises(ProposalRejected, match="no numeric UPPER_CASE constants"):
        agent.propose(_ctx(SOURCE))


def test_parallel_asks_avoid_what_is_in_flight() -> None:
    """Drafts made while others run (constant liar): none repeats a target that is running or queued."""
    from dataclasses import replace

    from autoresearch.agents.base import InFlight

    agent = OfflineAgent(OfflineSettings(seed=5))
    ctx = _ctx(SOURCE)
    flights: list[InFlight] = []
    contents = set()
    for n in range(1, 9):
        proposal = agent.propose(replace(ctx, n=1, in_flight=tuple(flights), agent_state=ctx.agent_state))
        assert proposal.content not in contents, f"draft {n} repeats one in flight"
        contents.add(proposal.content)
        flights.append(InFlight(description=proposal.description, parent="abc", lane=n % 2, n=n,
                                content=proposal.content, meta=proposal.meta))

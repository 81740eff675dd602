"""The offline agent honours the target's own asserts between constants (issue 15, item 6): on karpathy's
train.py (an excerpt, with its ``from prepare import MAX_SEQ_LEN``) no proposal breaks ``assert
TOTAL_BATCH_SIZE % tokens_per_fwdbwd == 0``; a crashed combination of values is not proposed again."""

from __future__ import annotations

import random
from pathlib import Path

from autoresearch.agents.asserts import failed_asserts, module_constants, structural_names
from autoresearch.agents.base import HistoryEntry, ProposalContext
from autoresearch.agents.constants import find_constants
from autoresearch.agents.offline import OfflineAgent, module_reader
from autoresearch.agents.space import barred
from autoresearch.ops.config import OfflineSettings

EXCERPT = (Path(__file__).parent / "fixtures" / "karpathy_train.py.txt").read_text()
PREPARE = 'import os\nMAX_SEQ_LEN = 2048\nTIME_BUDGET = float(os.environ.get("T", 300))\nEVAL_TOKENS = 40 * 524288\n'
TRAIN = "from prepare import MAX_SEQ_LEN, TIME_BUDGET\n" + EXCERPT


def repo(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "prepare.py").write_text(PREPARE)
    (tmp_path / "train.py").write_text(TRAIN)
    return tmp_path


def ctx(root: Path, content: str, history: list[HistoryEntry], state: dict, n: int) -> ProposalContext:
    return ProposalContext(n=n, repo=root, target="train.py", readonly=("prepare.py",), metric="val_bpb",
                           direction="min", best_commit="abc", best_content=content, best_metric=1.0,
                           history=tuple(history), last_crash_log=None, crash_streak=0, stale_streak=0,
                           agent_state=state)


def test_the_evaluator_follows_imports_products_and_reassignment(tmp_path: Path) -> None:
    read = module_reader(repo(tmp_path))
    assert module_constants(PREPARE) == {"MAX_SEQ_LEN": 2048, "EVAL_TOKENS": 40 * 524288}  # TIME_BUDGET: env
    assert failed_asserts(TRAIN, read) == []
    broken = TRAIN.replace("DEVICE_BATCH_SIZE = 128", "DEVICE_BATCH_SIZE = 512")  # 512 * 2048 > 2**19
    assert failed_asserts(broken, read) == ["TOTAL_BATCH_SIZE % tokens_per_fwdbwd == 0"]
    assert failed_asserts(broken, lambda _m: None) == []  # MAX_SEQ_LEN unknown: the assert is left alone
    source = "A = 6\nB = 4\nassert A <= B\nC = A\nC = f(C)\nassert C % 5 == 0\nD = 3\nD *= 2\nassert D % 4 == 0\n"
    assert failed_asserts(source, read) == ["A <= B", "D % 4 == 0"]  # C is no longer known after f(C)
    assert failed_asserts("N = 0\nassert 8 % N == 0\n", read) == ["8 % N == 0"]  # the script would raise
    assert "DEPTH" not in structural_names(TRAIN) and {"DEVICE_BATCH_SIZE", "TOTAL_BATCH_SIZE"} <= structural_names(
        TRAIN)


def test_the_reader_stays_at_the_top_of_the_repo(tmp_path: Path) -> None:
    root = repo(tmp_path / "r")
    (tmp_path / "outside.py").write_text("X = 1\n")
    read = module_reader(root)
    assert read("prepare") == PREPARE
    assert read("os.path") is None and read("../outside") is None and read("missing") is None


def test_no_proposal_breaks_the_files_assert(tmp_path: Path) -> None:
    """Without the check, this sweep proposes DEVICE_BATCH_SIZE 512 (or TOTAL_BATCH_SIZE 2**17) now and then."""
    root = repo(tmp_path)
    read = module_reader(root)
    broke_without = 0
    for seed in range(3):
        agent, state = OfflineAgent(OfflineSettings(seed=seed)), {}
        history: list[HistoryEntry] = []
        for n in range(1, 41):
            proposal = agent.propose(ctx(root, TRAIN, history, state, n))
            state = proposal.agent_state or state
            assert failed_asserts(proposal.content, read) == [], proposal.description
            history.append(HistoryEntry(n, f"c{n}", "discard", 1.0 + random.Random(n).random(),
                                        proposal.description, "ok", proposal.meta))
        blind = OfflineAgent(OfflineSettings(seed=seed))
        for n in range(1, 41):
            content = blind.propose(ctx(tmp_path / "nowhere", TRAIN, [], {}, n)).content  # prepare.py unseen
            broke_without += bool(failed_asserts(content, read))
    assert broke_without > 0, "the sweep never tried a breaking value: the test proves nothing"


def test_a_crashed_combination_is_not_proposed_again(tmp_path: Path) -> None:
    root = repo(tmp_path)
    agent = OfflineAgent(OfflineSettings(seed=3))
    first = agent.propose(ctx(root, TRAIN, [], {}, 1))
    combos = []
    history: list[HistoryEntry] = []
    for n in range(1, 60):
        proposal = agent.propose(ctx(root, TRAIN, history, {}, n))
        changed = proposal.meta["changed"]
        values = {k: c.value for k, c in find_constants(proposal.content).items()}
        for combo in combos:
            assert not all(values[k] == v for k, v in combo.items()), (combo, proposal.description)
        crashed = len(changed) > 1 and len(combos) < 5
        if crashed:
            combos.append({k: new for k, (_old, new) in changed.items()})
        history.append(HistoryEntry(n, f"c{n}", "crash" if crashed else "discard", None if crashed else 1.5,
                                    proposal.description, "exit:1" if crashed else "ok", proposal.meta))
    assert first.content and len(combos) >= 2, "too few two-constant crashes to test"
    assert barred(history) == combos


def test_a_combination_that_later_ran_is_not_barred() -> None:
    crash = HistoryEntry(1, "c1", "crash", None, "d", "exit:1", {"changed": {"A": [1, 2], "B": [3, 4]},
                                                                   "params": {"A": 2, "B": 4}})
    interrupted = HistoryEntry(2, "c2", "crash", None, "d", "interrupted",
                               {"changed": {"A": [1, 5], "B": [3, 6]}, "params": {"A": 5, "B": 6}})
    assert barred([crash, interrupted]) == [{"A": 2, "B": 4}]
    ran = HistoryEntry(3, "c3", "discard", 1.0, "d", "ok", {"changed": {"A": [1, 2]}, "params": {"A": 2, "B": 4}})
    assert barred([crash, ran]) == []

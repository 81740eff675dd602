"""The offline sweep stays in the valid space, on karpathy/autoresearch's train.py (an excerpt in fixtures/)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from autoresearch.agents.asserts import structural_names
from autoresearch.agents.base import HistoryEntry, ProposalContext
from autoresearch.agents.constants import find_constants
from autoresearch.agents.offline import OfflineAgent
from autoresearch.agents.space import build_space, narrowed
from autoresearch.agents.uses import display_only
from autoresearch.coordinator.loop import Loop
from autoresearch.git.workspace import FakeWorkspace
from autoresearch.journal.store import Journal
from autoresearch.ops.config import OfflineSettings, Settings
from autoresearch.runners.base import FakeRunner, RunSpec
from autoresearch.sessions.session import Session

KARPATHY = (Path(__file__).parent / "fixtures" / "karpathy_train.py.txt").read_text()
POW2 = ("ASPECT_RATIO", "HEAD_DIM", "TOTAL_BATCH_SIZE", "DEVICE_BATCH_SIZE")
"""Powers of two in a product or a divisibility check; DEPTH (8) is in none, so it is a plain int."""
RATIOS = ("WARMUP_RATIO", "WARMDOWN_RATIO", "FINAL_LR_FRAC")


def _only_sweep(names: set[str]) -> str:
    """The excerpt with every other constant marked fixed, so the sweep keeps coming back to these."""
    lines = KARPATHY.splitlines(keepends=True)
    for name, const in find_constants(KARPATHY).items():
        if name not in names:
            lines[const.line - 1] = lines[const.line - 1].rstrip("\n") + "  # autoresearch: fixed\n"
    return "".join(lines)


NARROW = _only_sweep({"DEVICE_BATCH_SIZE", "HEAD_DIM", "MATRIX_LR"})


def _ctx(content: str, history: list[HistoryEntry], state: dict, n: int) -> ProposalContext:
    return ProposalContext(
        n=n,
        repo=Path("."),
        target="train.py",
        readonly=(),
        metric="val_bpb",
        direction="min",
        best_commit="abc",
        best_content=content,
        best_metric=1.0,
        history=tuple(history),
        last_crash_log=None,
        crash_streak=0,
        stale_streak=0,
        agent_state=state,
    )


def _sweep(content: str, count: int, seed: int, crashes: bool = False) -> list[tuple[dict, HistoryEntry]]:
    """``count`` proposals against a stand-in metric; with ``crashes``, a bigger batch or head 'runs out of memory'."""
    agent, rng = OfflineAgent(OfflineSettings(seed=seed)), random.Random(seed)
    history: list[HistoryEntry] = []
    state: dict = {}
    out = []
    for n in range(1, count + 1):
        proposal = agent.propose(_ctx(content, history, state, n))
        state = proposal.agent_state or state
        values = {k: c.value for k, c in find_constants(proposal.content).items()}
        oom = crashes and (values["DEVICE_BATCH_SIZE"] > 128 or values["HEAD_DIM"] > 128)
        entry = HistoryEntry(
            n,
            f"c{n}",
            "crash" if oom else "discard",
            None if oom else 1 + rng.random(),
            proposal.description,
            "oom" if oom else "ok",
            proposal.meta,
        )
        history.append(entry)
        out.append((values, entry))
    return out


def test_karpathy_constants_are_found_and_the_printout_constant_is_left_alone() -> None:
    found = find_constants(KARPATHY)
    assert found["TOTAL_BATCH_SIZE"].value == 2**19 and found["TOTAL_BATCH_SIZE"].power_form
    assert display_only(KARPATHY, set(found)) == {"H100_BF16_PEAK_FLOPS"}
    structural = structural_names(KARPATHY) | {n for n, c in found.items() if c.power_form}
    kinds = {n: s["kind"] for n, s in build_space({n: c.value for n, c in found.items()}, 4.0, structural).items()}
    assert kinds["DEPTH"] == "int"
    assert {n for n, k in kinds.items() if k == "pow2"} == set(POW2)
    assert {n for n, k in kinds.items() if k == "ratio"} == set(RATIOS)


def test_many_proposals_stay_in_the_valid_space() -> None:
    before = find_constants(KARPATHY)
    for seed in range(3):
        for values, entry in _sweep(KARPATHY, 40, seed):
            for name in POW2:
                value = values[name]
                assert isinstance(value, int) and value > 0 and value & (value - 1) == 0, (name, value)
            for name in RATIOS:
                assert 0.0 <= values[name] <= 1.0, (name, values[name])
            for name, const in before.items():
                assert type(values[name]) is type(const.value), name  # ints stay ints, floats stay floats
            assert values["H100_BF16_PEAK_FLOPS"] == 989.5e12
            assert "H100" not in entry.description
            assert "TOTAL_BATCH_SIZE" not in entry.description or "-> 2**" in entry.description
    depths = {values["DEPTH"] for seed in range(3) for values, _ in _sweep(KARPATHY, 40, seed)}
    assert depths - {2, 4, 8, 16, 32}, depths  # DEPTH is no power of two by rule: 3, 5, 6, 7 ... occur


def test_a_fixed_comment_excludes_a_constant() -> None:
    marked = KARPATHY.replace("DEPTH = 8               #", "DEPTH = 8  # autoresearch: fixed;").replace(
        "MATRIX_LR = 0.04        #", "MATRIX_LR = 0.04  # Autoresearch: FIXED --"
    )
    for values, entry in _sweep(marked, 40, seed=5):
        assert values["DEPTH"] == 8 and values["MATRIX_LR"] == 0.04
        assert "DEPTH" not in entry.description and "MATRIX_LR" not in entry.description


def test_a_crashed_value_bars_itself_and_beyond() -> None:
    runs = _sweep(NARROW, 30, seed=2, crashes=True)
    crashes = [e for _, e in runs if e.status == "crash"]
    assert crashes, "the stand-in never crashed: pick another seed"
    for i, (_values, entry) in enumerate(runs):
        if entry.status != "crash" or len(entry.meta["changed"]) != 1:
            continue
        ((name, (old, new)),) = entry.meta["changed"].items()
        for later, _ in runs[i + 1 :]:
            assert later[name] < new if new > old else later[name] > new, (name, new, later[name])
    singles = [next(iter(e.meta["changed"])) for e in crashes if len(e.meta["changed"]) == 1]
    assert singles, "no single-change crash: pick another seed"


def _entry(n: int, status: str, cause: str, changed: dict, params: dict | None = None) -> HistoryEntry:
    return HistoryEntry(
        n, f"c{n}", status, None if status == "crash" else 1.0, "d", cause, {"changed": changed, "params": params or {}}
    )


def test_narrowing_rules() -> None:
    space = build_space({"DEVICE_BATCH_SIZE": 128, "LR": 0.04, "STEPS": 100}, 4.0)
    crash_up = _entry(1, "crash", "oom", {"DEVICE_BATCH_SIZE": [128, 256]})
    crash_down = _entry(2, "crash", "exit:1", {"LR": [0.04, 0.02]})
    assert narrowed(space, [crash_up])["DEVICE_BATCH_SIZE"]["high"] == 128
    lr = narrowed(space, [crash_down])["LR"]
    assert lr["low"] == pytest.approx(0.0202) and lr["high"] == space["LR"]["high"]
    assert narrowed(space, [_entry(3, "crash", "exit:1", {"STEPS": [100, 150]})])["STEPS"]["high"] == 149
    ignored = [
        _entry(4, "crash", "interrupted", {"DEVICE_BATCH_SIZE": [128, 256]}),  # the daemon died, not the value
        _entry(5, "crash", "docker", {"DEVICE_BATCH_SIZE": [128, 256]}),
        _entry(6, "crash", "oom", {"DEVICE_BATCH_SIZE": [128, 256], "LR": [0.04, 0.08]}),  # cannot tell which
    ]
    assert narrowed(space, ignored) == space
    succeeded_beyond = _entry(7, "discard", "ok", {"DEVICE_BATCH_SIZE": [128, 512]}, {"DEVICE_BATCH_SIZE": 512})
    assert narrowed(space, [crash_up, succeeded_beyond]) == space


def test_a_space_from_older_rules_is_rebuilt() -> None:
    old = {"space": {"DEVICE_BATCH_SIZE": {"kind": "int", "low": 32, "high": 512, "log": True}}}
    proposal = OfflineAgent(OfflineSettings(seed=1)).propose(_ctx(KARPATHY, [], old, 1))
    assert proposal.agent_state is not None and proposal.agent_state["space"]["DEVICE_BATCH_SIZE"]["kind"] == "pow2"


def test_display_only_analysis() -> None:
    source = """
import logging, math
log = logging.getLogger()
PEAK = 1e15
SHOWN = 3
LOGGED = 2
SEED_LIKE = 7
LR = 0.1
UNUSED = 5
SCALE = 2.0
rate = 100 * 5 / PEAK
rate = max(rate, 0)
print(f"rate {rate}")
print("shown", SHOWN)
log.info("x=%s", LOGGED)
train(LR)
y = math.log(SCALE)
set_seed(SEED_LIKE)
print(f"{SEED_LIKE}")
"""
    names = {"PEAK", "SHOWN", "LOGGED", "SEED_LIKE", "LR", "UNUSED", "SCALE"}
    assert display_only(source, names) == {"PEAK", "SHOWN", "LOGGED"}


def test_constants_printed_in_the_metric_line_are_swept() -> None:
    """The metric's own line is what the daemon judges: its inputs are never 'display only'."""
    source = 'LR = 0.5\nWIDTH = 8\nPEAK = 9\nprint("val_bpb:   %.6f" % ((LR - 0.1) ** 2 + WIDTH))\n' \
             'print(f"val_bpb: {LR}")\nprint(f"mfu: {PEAK}")\n'
    assert display_only(source, {"LR", "WIDTH", "PEAK"}, judged=("val_bpb",)) == {"PEAK"}
    assert display_only(source, {"LR", "WIDTH", "PEAK"}) == {"LR", "WIDTH", "PEAK"}
    agent = OfflineAgent.from_config(Settings(target="train.py"), Path("."))
    assert set(agent.tunable(source, ("val_bpb",))) == {"LR", "WIDTH"}


def _loop(tmp_path: Path, ws: FakeWorkspace, runner: FakeRunner, total: int) -> Loop:
    session = Session(repo=tmp_path, state_dir=tmp_path / ".git" / "autoresearch", tag="t")
    # No drafting ahead: each proposal sees the crash before it (a draft made during a run could not).
    settings = Settings(target="train.py", budget=1.0, limits={"max_experiments": total}, noise={"repeats": 0},
                        offline={"seed": 4}, proposals={"ahead": 0})
    return Loop(
        settings=settings,
        session=session,
        workspace=ws,
        runner=runner,
        agent=OfflineAgent.from_config(settings, tmp_path),
        idle_wait_s=lambda _k: 0.0,
    )


def test_the_narrowed_study_resumes_from_the_journal(tmp_path: Path) -> None:
    """Through the loop: crashes are journaled, a restarted daemon (a new agent) still avoids them."""
    ws = FakeWorkspace(root=tmp_path, files={"train.py": NARROW})
    ws.create_branch("autoresearch/t")
    rng = random.Random(0)

    def run(spec: RunSpec) -> tuple[str, str]:
        values = {k: c.value for k, c in find_constants(ws.read(str(spec.commit), "train.py")).items()}
        if values["DEVICE_BATCH_SIZE"] > 128 or values["HEAD_DIM"] > 128:
            return "CUDA out of memory\n", "oom"
        return f"val_bpb: {1 + rng.random():.6f}\n", "ok"

    runner = FakeRunner(script=[run] * 40)
    _loop(tmp_path, ws, runner, 12).run()
    _loop(tmp_path, ws, runner, 30).run()  # a restart: a fresh agent, the same journal
    done = Journal(tmp_path / ".git/autoresearch/journal.jsonl").load().completed()
    assert len(done) == 30
    metas = [dict(e.meta) for e in done]
    barred = 0
    for i, exp in enumerate(done):
        changed = metas[i].get("changed") or {}
        if exp.status != "crash" or len(changed) != 1:
            continue
        ((name, (old, new)),) = changed.items()
        barred += i < 12
        for meta in metas[i + 1 :]:
            value = meta["params"][name]
            assert value < new if new > old else value > new
    assert barred, "no single-change crash before the restart: pick another seed"

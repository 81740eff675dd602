"""results.tsv has one row per change (issue 15, item 4), the limits count what they say (item 5), and
karpathy's notebook logic reads the file right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoresearch.journal.ledger import parse_results, rows
from autoresearch.journal.status import summarize
from autoresearch.report.data import load_ledger
from tests.conftest import FAST_TRAIN, cli, git, make_repo
from tests.karpathy_analysis import analyse, check_session
from tests.loop_fakes import TARGET, fake_loop, ok


def variant(value: str) -> str:
    return TARGET.replace("0.5", value)


# baseline 2.0, 2.1, 1.9 (σ 0.1); "LR 0.4" 1.5 past the screen -> the pair (fresh best 2.0, 1.6) gains 0.4:
# keep at mean 1.55; "LR 0.3" 1.4 past the screen -> pairs (1.55, 1.5) and (1.6, 1.6): within noise at the
# last look, discard (mean of 3); "LR 0.2" crashes; "LR 0.1" 1.0 is clear at once: keep.
SESSION_RUNS = [ok(2.0), ok(2.1), ok(1.9), ok(1.5), ok(2.0), ok(1.6), ok(1.4), ok(1.55), ok(1.5), ok(1.6), ok(1.6),
                ("Traceback\n", "exit:1"), ok(1.0)]
SESSION_PROPOSALS = [(variant("0.4"), "LR 0.4"), (variant("0.3"), "LR 0.3"), (variant("0.2"), "LR 0.2"),
                     (variant("0.1"), "LR 0.1")]


def run_session(tmp_path: Path, **limits: int) -> tuple[list[dict[str, str]], object]:
    loop = fake_loop(tmp_path, list(SESSION_RUNS), list(SESSION_PROPOSALS), noise={"repeats": 2},
                     limits=limits or {"max_experiments": 5})
    result = loop.run()
    return parse_results((tmp_path / "results.tsv").read_text()), (loop, result)


def test_one_row_per_change_with_the_judges_mean(tmp_path: Path) -> None:
    got, (loop, result) = run_session(tmp_path)
    assert [(r["status"], r["val_bpb"], r["description"]) for r in got] == [
        ("keep", "2.000000", "baseline (mean of 3 runs)"),
        ("keep", "1.550000", "LR 0.4 (mean of 2 runs)"),
        ("discard", "1.500000", "LR 0.3 [within noise] (mean of 3 runs)"),
        ("crash", "0.000000", "LR 0.2 [exit:1]"),
        ("keep", "1.000000", "LR 0.1"),
    ]
    state = loop.journal.load()  # type: ignore[attr-defined]
    assert len(state.completed()) == len(SESSION_RUNS)  # every re-measurement is still a run in the journal
    assert [r.verdict_n for r in rows(state)] == [0, 5, 10, 11, 12]  # rows in verdict order
    assert result.reason == "max_experiments reached (5)"  # type: ignore[attr-defined]


def test_karpathys_notebook_counts_kept_changes_and_right_deltas(tmp_path: Path) -> None:
    run_session(tmp_path)
    got = check_session(tmp_path, journal=tmp_path / ".git" / "autoresearch" / "journal.jsonl")
    assert len(got.kept) == 3 and got.counts == {"KEEP": 3, "DISCARD": 1, "CRASH": 1}
    assert [d for _, d in got.deltas] == [pytest.approx(0.45), pytest.approx(0.55)]
    assert got.running_best == [2.0, 1.55, 1.0]
    assert got.lines()[:2] == ["Total experiments: 5", "KEPT experiments (3 total):"]


def test_the_check_fails_on_a_file_with_extra_keep_rows(tmp_path: Path) -> None:
    """The check is not vacuous: the old layout (a row per run) breaks it."""
    run_session(tmp_path)
    text = (tmp_path / "results.tsv").read_text().splitlines()
    repeat = text[1].replace("baseline (mean of 3 runs)", "confirm: baseline")
    (tmp_path / "results.tsv").write_text("\n".join([*text[:2], repeat, *text[2:]]) + "\n")
    with pytest.raises(AssertionError):
        check_session(tmp_path, journal=tmp_path / ".git" / "autoresearch" / "journal.jsonl")


def test_status_and_report_count_the_rows(tmp_path: Path) -> None:
    run_session(tmp_path)
    loop_state = rows_state(tmp_path)
    s = summarize(loop_state, "min")
    assert (s["experiments"], s["keep"], s["discard"], s["crash"]) == (5, 3, 1, 1)
    assert (s["run_count"], s["remeasurements"]) == (13, 8)
    assert s["baseline"] == pytest.approx(2.0) and s["best"] == pytest.approx(1.0)
    assert s["improvement"]["absolute"] == pytest.approx(1.0)
    ledger = load_ledger(tmp_path, "val_bpb", "min")
    assert [r.status for r in ledger.runs] == ["keep", "keep", "discard", "crash", "keep"]
    assert ledger.improvements == 2 and ledger.remeasurements == 8
    assert [h.gain for h in ledger.hits()] == [pytest.approx(0.55), pytest.approx(0.45)]
    assert analyse((tmp_path / "results.tsv").read_text()).total == s["experiments"] == len(ledger.runs)


def rows_state(tmp_path: Path):  # type: ignore[no-untyped-def]
    from autoresearch.journal.store import Journal

    return Journal(tmp_path / ".git" / "autoresearch" / "journal.jsonl").load()


def test_a_change_awaiting_its_confirmation_has_no_row_yet(tmp_path: Path) -> None:
    """max_runs stops between a candidate's first run and its confirmation: no row until its verdict."""
    got, (loop, result) = run_session(tmp_path, max_runs=5)
    assert [r["description"] for r in got] == ["baseline (mean of 3 runs)"]
    assert result.reason == "max_runs reached (5 runs)"  # type: ignore[attr-defined]
    state = loop.journal.load()  # type: ignore[attr-defined]
    assert len(state.completed()) == 5 and state.completed()[-1].for_candidate == 3


def test_max_runs_counts_every_run_and_max_experiments_only_verdicts(tmp_path: Path) -> None:
    got, (loop, _) = run_session(tmp_path / "runs", max_runs=4)
    assert len(loop.journal.load().completed()) == 4  # type: ignore[attr-defined]
    got, (loop, _) = run_session(tmp_path / "changes", max_experiments=2)
    # The case: 2 changes = the baseline (3 runs) and one proposal with its confirmation (3 runs).
    assert [r["description"] for r in got] == ["baseline (mean of 3 runs)", "LR 0.4 (mean of 2 runs)"]
    assert len(loop.journal.load().completed()) == 6  # type: ignore[attr-defined]


NOISY_TRAIN = FAST_TRAIN.replace(
    'print("val_bpb:          %.6f" % ((LR - 0.1) ** 2 + abs(WIDTH - 12) * 0.01 + 1.0))',
    'noise = (int(os.environ["AUTORESEARCH_SEED"]) * 7 % 5) * 0.001  # each run its own seed, its own noise\n'
    'print("val_bpb:          %.6f" % ((LR - 0.1) ** 2 + abs(WIDTH - 12) * 0.01 + 1.0 + noise))')


@pytest.mark.slow
def test_a_real_session_reads_right_in_karpathys_notebook_status_and_report(tmp_path: Path) -> None:
    """The daemon itself (CLI, sandboxed runs, offline agent, baseline repeats and confirmations)."""
    assert NOISY_TRAIN != FAST_TRAIN
    repo = make_repo(tmp_path / "r", train=NOISY_TRAIN).resolve()
    repeats = {"AUTORESEARCH_NOISE__REPEATS": "2"}
    assert cli("init", str(repo), "--tag", "rows", "--budget", "2", "--runner", "process").returncode == 0
    run = cli("run", str(repo), "--max-experiments", "5", env=repeats, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = check_session(repo)
    status = json.loads(cli("status", str(repo), "--json", "--runs").stdout)
    assert status["experiments"] == got.total == 5
    assert {k: status[k] for k in ("keep", "discard", "crash")} == {
        k: got.counts.get(k.upper(), 0) for k in ("keep", "discard", "crash")}
    roles = [r["role"] for r in status["run_list"]]
    assert roles[:3] == ["baseline", "repeat", "repeat"]
    # A gain clear at once is kept without a pair; a confirmation always comes with its fresh best run.
    assert ("fresh best" in roles) == ("confirmation" in roles)
    assert status["run_count"] == len(roles) > 5
    table = cli("status", str(repo), "--runs", env={"COLUMNS": "300"}).stdout
    assert "confirm: baseline" in table
    ledger = load_ledger(repo, "val_bpb", "min")
    assert len(ledger.runs) == 5 and ledger.remeasurements == len(roles) - 5
    assert git(repo, "status", "--porcelain") == ""

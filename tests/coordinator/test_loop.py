from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from autoresearch.agents.base import Proposal
from autoresearch.errors import AgentError, AgentFatal, BaselineCrashed, EngineUnavailable, ProposalRejected
from autoresearch.git.workspace import FakeWorkspace
from autoresearch.journal.status import summarize
from autoresearch.ops.retry import backoff_s
from tests.loop_fakes import TARGET, fake_loop, ok


def test_keep_discard_crash_and_results_tsv_byte_exact(tmp_path: Path) -> None:
    runs = [ok(2.0), ok(1.5), ok(1.7), ("boom\nTraceback\n", "exit:1"), ("val_bpb: nan\n", "ok"), ok(1.5),
            ("val_bpb: 1.2\n", "timeout")]
    proposals = [(TARGET.replace("0.5", f"0.{i}"), f"LR try\t{i}\nmore") for i in range(1, 7)]
    loop = fake_loop(tmp_path, runs, proposals, limits={"max_experiments": 7})
    with capture_logs() as logs:
        result = loop.run()
    assert result.reason == "max_experiments reached (7)" and result.exit_code == 0
    ws = loop.workspace
    assert isinstance(ws, FakeWorkspace)
    sha = {n: ws.refs[f"refs/autoresearch/t/{n}"][:7] for n in range(7)}
    expected = (
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
        f"{sha[0]}\t2.000000\t0.0\tkeep\tbaseline\n"
        f"{sha[1]}\t1.500000\t0.0\tkeep\tLR try 1 more\n"
        f"{sha[2]}\t1.700000\t0.0\tdiscard\tLR try 2 more\n"
        f"{sha[3]}\t0.000000\t0.0\tcrash\tLR try 3 more [exit:1]\n"
        f"{sha[4]}\t0.000000\t0.0\tcrash\tLR try 4 more [no finite val_bpb]\n"
        f"{sha[5]}\t1.500000\t0.0\tdiscard\tLR try 5 more\n"
        f"{sha[6]}\t0.000000\t0.0\tcrash\tLR try 6 more [timeout]\n"
    )
    assert (tmp_path / "results.tsv").read_text() == expected
    # The branch sits at the best commit; every other commit is still reachable through its ref.
    assert ws.head() == ws.refs["refs/autoresearch/t/1"]
    assert ws.files["train.py"] == TARGET.replace("0.5", "0.1")
    finished = [e for e in logs if e["event"] == "experiment.finished"]
    assert [e["status"] for e in finished] == ["keep", "keep", "discard", "crash", "crash", "discard", "crash"]
    fields = {"n", "commit", "metric", "memory_gb", "status", "description", "run_wall_s", "propose_s"}
    assert fields <= set(finished[0])


def test_discard_parent_is_best_and_history_reaches_agent(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0), ok(3.0), ("Traceback: oops\n", "exit:2"), ok(1.0)],
                     limits={"max_experiments": 4})
    loop.run()
    agent = loop.agent
    ctxs = agent.contexts  # type: ignore[attr-defined]
    assert [c.n for c in ctxs] == [1, 2, 3]
    assert all(c.best_content == TARGET for c in ctxs)  # discards and crashes never become the parent
    assert ctxs[2].last_crash_log is not None and "oops" in ctxs[2].last_crash_log
    assert ctxs[2].crash_streak == 1 and ctxs[2].stale_streak == 2
    assert [h.status for h in ctxs[2].history] == ["keep", "discard", "crash"]


def test_crash_log_withheld_after_too_many_crashes(tmp_path: Path) -> None:
    runs = [ok(2.0)] + [("Traceback\n", "exit:1")] * 3 + [ok(1.0)]
    loop = fake_loop(tmp_path, runs, limits={"max_experiments": 5}, max_crash_fixes=2)
    loop.run()
    ctxs = loop.agent.contexts  # type: ignore[attr-defined]
    assert [c.last_crash_log is not None for c in ctxs] == [False, True, True, False]


def test_max_direction(tmp_path: Path) -> None:
    runs = [ok(0.5), ok(0.4), ok(0.9)]
    loop = fake_loop(tmp_path, runs, limits={"max_experiments": 3}, direction="max")
    loop.run()
    rows = (tmp_path / "results.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[3] for r in rows] == ["keep", "discard", "keep"]


def test_baseline_crash_stops_with_clear_error(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [("ImportError: no module named torch\n", "exit:1")])
    with pytest.raises(BaselineCrashed, match=r"baseline.*crashed.*exit:1") as info:
        loop.run()
    assert "no module named torch" in str(info.value)
    assert (tmp_path / "results.tsv").read_text().splitlines()[1].split("\t")[3] == "crash"


def test_interrupted_baseline_is_not_fatal_and_reruns(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [("", "docker"), ok(2.0)], limits={"max_runs": 2})
    loop.wait_for_runner = lambda reap=False, runner=None: None  # type: ignore[method-assign]
    loop.run()
    rows = (tmp_path / "results.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[3] for r in rows] == ["keep"]  # the baseline is one row; its crash is a run
    assert rows[0].endswith("\tbaseline")
    assert [e.status for e in loop.journal.load().completed()] == ["crash", "keep"]


def test_agent_error_skips_iteration_without_running(tmp_path: Path) -> None:
    proposals = [AgentError("model said nothing", usage={"cost_usd": 0.25}), (TARGET + "# x\n", "x")]
    loop = fake_loop(tmp_path, [ok(2.0), ok(1.0)], proposals, limits={"max_experiments": 2})
    loop.run()
    state = loop.journal.load()
    assert len(state.completed()) == 2
    assert len(loop.runner.specs) == 2  # type: ignore[attr-defined]
    assert state.skipped[0].usage.cost_usd == 0.25


def test_train_runs_get_a_snapshot_and_their_output_folder(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0)], limits={"max_experiments": 1})
    loop.run()
    spec = loop.runner.specs[0]  # type: ignore[attr-defined]
    assert spec.kind == "train" and spec.snapshot is not None
    assert spec.output_dir == loop.session.run_dir(0) / "output"


def test_bad_python_and_no_op_proposals_are_skipped(tmp_path: Path) -> None:
    proposals = [("def broken(:\n", "syntax"), (TARGET, "same"), (TARGET + "# ok\n", "fine")]
    loop = fake_loop(tmp_path, [ok(2.0), ok(1.0)], proposals, limits={"max_experiments": 2})
    loop.run()
    errors = [r.error for r in loop.journal.load().skipped]
    assert "does not compile" in errors[0] and "does not change" in errors[1]


def test_agent_fatal_propagates(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0)], [AgentFatal("API key rejected (401)")])
    with pytest.raises(AgentFatal, match="401"):
        loop.run()
    stop = loop.journal.load().stops[-1]  # the one-line reason, for status and systemd
    assert stop.exit_code == 2 and stop.reason == "API key rejected (401)"
    assert loop.notifier.sent[-1].startswith("STOPPING=1\nSTATUS=stopped: API key rejected (401)")


def test_engine_down_before_start_waits_and_reruns_same_experiment(tmp_path: Path) -> None:
    def engine_down(_spec):  # type: ignore[no-untyped-def]
        raise EngineUnavailable("Docker engine unreachable")

    loop = fake_loop(tmp_path, [ok(2.0), engine_down, ok(1.0)], limits={"max_experiments": 2})
    waited: list[bool] = []
    loop.wait_for_runner = lambda reap=False, runner=None: waited.append(reap)  # type: ignore[method-assign]
    loop.run()
    rows = (tmp_path / "results.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[3] for r in rows] == ["keep", "keep"] and waited == [True, False]
    assert [s.n for s in loop.runner.specs] == [0, 1, 1]  # type: ignore[attr-defined]


def test_engine_lost_mid_run_is_a_docker_crash_then_waits(tmp_path: Path) -> None:
    loop = fake_loop(tmp_path, [ok(2.0), ("", "docker"), ok(1.0)], limits={"max_experiments": 3})
    waited: list[bool] = []
    loop.wait_for_runner = lambda reap=False, runner=None: waited.append(reap)  # type: ignore[method-assign]
    loop.run()
    rows = (tmp_path / "results.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[3] for r in rows] == ["keep", "crash", "keep"] and waited == [True, False]
    assert rows[1].endswith("[docker]")


def test_failed_proposals_are_counted_shown_and_escalated(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []

    def good(ctx):  # type: ignore[no-untyped-def]
        seen.append(summarize(loop.journal.load(), "min"))
        return Proposal(content=TARGET + "# ok\n", description="ok")

    failures = [ProposalRejected(f"train.py does not compile (try {i})") for i in range(4)]
    loop = fake_loop(tmp_path, [ok(2.0), ok(1.0)], [*failures, good], limits={"max_experiments": 2})
    loop.settings.proposals.max_failed_in_a_row = 3
    with capture_logs() as logs:
        loop.run()
    assert seen[0]["failed_proposals_in_a_row"] == 4
    assert seen[0]["last_proposal_error"] == "train.py does not compile (try 3)"
    assert summarize(loop.journal.load(), "min")["failed_proposals_in_a_row"] == 0  # a proposal resets it
    ctxs = loop.agent.contexts  # type: ignore[attr-defined]
    assert [len(c.recent_errors) for c in ctxs] == [0, 0, 0, 3, 4]  # escalated from the third failure on
    assert "try 2" in ctxs[3].recent_errors[-1]
    skipped = [e for e in logs if e["event"] == "proposal.skipped"]
    assert [e["log_level"] for e in skipped] == ["warning", "warning", "error", "error"]
    assert any(m.startswith("STATUS=proposal failed (4 in a row): train.py does not compile (try 3)")
               for m in loop.notifier.sent)


def test_failed_proposal_pause_doubles_up_to_ten_minutes() -> None:
    assert [backoff_s(k) for k in (1, 2, 3, 10, 11, 50)] == [1.0, 2.0, 4.0, 512.0, 600.0, 600.0]


def test_failed_proposals_count_toward_max_cost_usd(tmp_path: Path) -> None:
    paid_failures = [AgentError("no edit", usage={"cost_usd": 0.4}) for _ in range(5)]
    loop = fake_loop(tmp_path, [ok(2.0)], paid_failures, limits={"max_cost_usd": 1.0})
    result = loop.run()
    state = loop.journal.load()
    assert "max_cost_usd" in result.reason and len(state.skipped) == 3 and len(state.completed()) == 1

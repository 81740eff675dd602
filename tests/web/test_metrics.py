"""``/metrics`` scraped and parsed with prometheus_client's own parser: the change counts are
results.tsv's, the run counts the journal's; waits, runs in flight and ages from journal records."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from autoresearch.journal.ledger import parse_results
from autoresearch.journal.store import Journal
from autoresearch.web.metrics import SessionCollector
from autoresearch.web.source import SessionSource
from tests.web.conftest import recorded_session, serving

CRASHING = "import sys\nLR = 0.5\nsys.exit(3)\n"


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted labels: value}, every sample of the exposition."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return recorded_session(tmp_path_factory.mktemp("metrics"), "m", 4)


def test_a_scrape_matches_results_tsv_and_the_journal(session: Path) -> None:
    with serving(session) as served:
        response = httpx.get(served.url + "metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    got = samples(response.text)
    rows = Counter(r["status"] for r in parse_results((session / "results.tsv").read_text()))
    assert sum(rows.values()) == 4
    for status in ("keep", "discard", "crash"):
        assert got["autoresearch_changes_total"][(("status", status),)] == rows.get(status, 0)
    records = [json.loads(line) for line in (session / ".git/autoresearch/journal.jsonl").read_text().splitlines()]
    finished = {r["n"]: r["cause"] for r in records if r.get("phase") == "finished"}
    runs = Counter(finished.values())
    assert {labels[0][1]: value for labels, value in got["autoresearch_runs_total"].items()} == runs
    assert got["autoresearch_run_duration_seconds_count"][()] == len(finished)
    assert got["autoresearch_lane_runs_in_flight"][(("lane", "0"),)] == 0
    best = [r for r in records if r.get("phase") == "recorded"][-1]["best_metric"]
    assert got["autoresearch_best_metric"][(("direction", "min"), ("metric", "val_bpb"))] == pytest.approx(best)
    assert got["autoresearch_journal_last_record_age_seconds"][()] >= 0
    assert got["autoresearch_budget_seconds"][()] == 5


def test_crashes_waits_and_a_run_in_flight_are_counted(session: Path, tmp_path: Path) -> None:
    repo = tmp_path / "copy"
    shutil.copytree(session, repo, symlinks=True)
    journal = Journal(repo / ".git/autoresearch/journal.jsonl")
    state = journal.load()
    n, parent = state.next_n(), state.best()
    assert parent is not None
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=100)
    at = [(start + dt.timedelta(seconds=s)).isoformat(timespec="milliseconds") for s in (0, 30, 40, 50, 60, 70)]
    journal.append({"type": "wait", "what": "engine", "reason": "engine down", "at": at[0]})
    journal.append({"type": "wait", "what": None, "at": at[1]})
    journal.append({"type": "wait", "what": "gpu", "reason": "GPU 0 busy", "at": at[2]})
    journal.append({"type": "usage", "error": "rate limited", "usage": {"cost_usd": 0.5}, "at": at[3]})
    lane = journal.for_lane(0)
    lane.proposed(n, content=CRASHING, parent=parent.commit, description="times out", agent="t")
    lane.phase(n, "committed", commit=parent.commit)
    lane.phase(n, "running", handle={})
    lane.phase(n, "finished", cause="timeout", exit_code=None, metric=None, wall_s=12.0)
    lane.phase(n, "recorded", status="crash", row_description="times out")
    n += 1
    journal.for_lane(0).proposed(n, content=CRASHING, parent=parent.commit, description="in flight", agent="t")
    journal.for_lane(0).phase(n, "committed", commit=parent.commit, at=at[4])
    journal.for_lane(0).phase(n, "running", handle={}, at=at[5])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SessionCollector(SessionSource.from_repo(repo)))
    got = samples(generate_latest(registry).decode())
    assert got["autoresearch_waits_total"] == {(("reason", "engine"),): 1, (("reason", "gpu"),): 1,
                                               (("reason", "runner"),): 0, (("reason", "slurm"),): 0}
    assert got["autoresearch_wait_seconds_total"][(("reason", "engine"),)] == pytest.approx(30, abs=0.01)
    assert got["autoresearch_wait_seconds_total"][(("reason", "gpu"),)] >= 60  # still waiting: counted to now
    assert got["autoresearch_waiting"][(("reason", "gpu"),)] == 1
    assert got["autoresearch_failed_proposals_total"][()] == 1
    assert got["autoresearch_agent_cost_usd_total"][()] == pytest.approx(0.5)
    assert got["autoresearch_lane_runs_in_flight"][(("lane", "0"),)] == 1
    assert 0 < got["autoresearch_lane_busy_ratio"][(("lane", "0"),)] <= 1
    assert got["autoresearch_queue_duration_seconds_count"][()] >= 1
    assert got["autoresearch_runs_total"][(("cause", "timeout"),)] == 1
    assert got["autoresearch_changes_total"][(("status", "crash"),)] == 1
    assert got["autoresearch_run_duration_seconds_bucket"][(("le", "15.0"),)] - \
        got["autoresearch_run_duration_seconds_bucket"][(("le", "5.0"),)] == 1  # the 12 s run


"""``/metrics``: the session's journal as Prometheus metrics, computed at each scrape by a custom
collector (the journal is the state; nothing is counted in this process, so a restarted server or
daemon reports the same totals). Names follow Prometheus conventions: ``_total`` counters, base units."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import get_args

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from autoresearch.journal import ledger
from autoresearch.journal.records import WaitWhat
from autoresearch.journal.status import lane_of, total_cost, total_tokens
from autoresearch.journal.store import Experiment, JournalState
from autoresearch.judging import noise
from autoresearch.web.source import SessionSource

SECONDS_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)


class SessionCollector(Collector):
    """Reads the session at each scrape (incrementally: only what was appended since the last one)."""

    def __init__(self, source: SessionSource, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        state = self.source.load()
        now = self.clock()
        yield from _outcomes(state, self.source.settings.metric)
        yield from _levels(state, self.source.settings.direction, self.source.settings.metric)
        yield from _lanes(state, now)
        yield from _durations(state)
        yield from _agent(state)
        yield from _waits(state, now)
        yield from _freshness(self.source, state, now)


def _outcomes(state: JournalState, metric: str) -> Iterator[Metric]:
    changes = CounterMetricFamily("autoresearch_changes", "results.tsv rows by status.", labels=["status"])
    rows = Counter(row["status"] for row in ledger.parse_results(ledger.render(state, metric)))
    for status in ("keep", "discard", "crash"):
        changes.add_metric([status], rows.get(status, 0))
    yield changes
    runs = CounterMetricFamily("autoresearch_runs", "Training runs that ended, by cause.", labels=["cause"])
    for cause, count in sorted(Counter(e.outcome.cause for e in _finished(state)).items()):
        runs.add_metric([cause], count)
    yield runs


def _levels(state: JournalState, direction: str, metric: str) -> Iterator[Metric]:
    keeps = [e for e in state.completed() if e.status == "keep" and e.metric is not None and e.reason != "repeat"]
    for name, doc, value in (
        ("autoresearch_best_metric", "The best's level (the judge's mean of its runs).", noise.best_mean(state)),
        ("autoresearch_baseline_metric", "The baseline's metric.", keeps[0].metric if keeps else None),
        ("autoresearch_noise_sigma", "The noise σ of the metric, from repeated runs.", noise.sigma(state)),
    ):
        if value is not None:
            gauge = GaugeMetricFamily(name, doc, labels=["metric", "direction"])
            gauge.add_metric([metric, direction], float(value))
            yield gauge


def _lanes(state: JournalState, now: float) -> Iterator[Metric]:
    in_flight = GaugeMetricFamily("autoresearch_lane_runs_in_flight", "Runs training now, per lane.",
                                  labels=["lane"])
    busy = GaugeMetricFamily("autoresearch_lane_busy_ratio",
                             "Share of the session's time each lane spent training.", labels=["lane"])
    started = _seconds(state.ordered()[0].phase_at("proposed")) if state.experiments else None
    span = max(now - started, 1e-9) if started is not None else None
    trained: dict[int, float] = {}
    running: dict[int, int] = {}
    for exp in state.ordered():
        lane = lane_of(exp)
        trained.setdefault(lane, 0.0)
        running.setdefault(lane, 0)
        if exp.finished is not None:
            trained[lane] += exp.finished.wall_s
        elif exp.running is not None and (since := _seconds(exp.phase_at("running"))) is not None:
            running[lane] += 1
            trained[lane] += max(now - since, 0.0)
    for lane in sorted(trained):
        in_flight.add_metric([str(lane)], running[lane])
        if span is not None:
            busy.add_metric([str(lane)], min(trained[lane] / span, 1.0))
    yield in_flight
    yield busy


def _durations(state: JournalState) -> Iterator[Metric]:
    finished = _finished(state)
    yield _histogram("autoresearch_run_duration_seconds", "Wall time of each training run.",
                     [e.outcome.wall_s for e in finished])
    queued = [_between(e.phase_at("committed"), e.phase_at("running")) for e in state.ordered()]
    yield _histogram("autoresearch_queue_duration_seconds", "From commit to the run's start (waiting for a lane).",
                     [q for q in queued if q is not None])
    yield _histogram("autoresearch_propose_duration_seconds", "How long the agent took to propose a change.",
                     [e.propose_s for e in state.ordered() if e.propose_s is not None])


def _agent(state: JournalState) -> Iterator[Metric]:
    cost = CounterMetricFamily("autoresearch_agent_cost_usd", "What the agent's proposals cost, in US dollars.")
    cost.add_metric([], total_cost(state))
    yield cost
    tokens = CounterMetricFamily("autoresearch_agent_tokens", "Tokens the agent used, by kind.", labels=["kind"])
    for kind, count in total_tokens(state).items():
        tokens.add_metric([kind.removesuffix("_tokens")], count)
    yield tokens
    failed = CounterMetricFamily("autoresearch_failed_proposals", "Proposals that failed (no run was made).")
    failed.add_metric([], len(state.skipped))
    yield failed
    yield GaugeMetricFamily("autoresearch_failed_proposals_in_a_row", "Failed proposals since the last good one.",
                            value=len(state.failed_in_a_row))


def _waits(state: JournalState, now: float) -> Iterator[Metric]:
    """Each wait (engine down, GPU busy) from its record to the next record that ends or replaces it."""
    counts: Counter[str] = Counter()
    seconds: dict[str, float] = dict.fromkeys(get_args(WaitWhat), 0.0)
    current: tuple[str, float] | None = None
    for rec in state.waits:
        at = _seconds(rec.at)
        if current is not None and at is not None:
            seconds[current[0]] = seconds.get(current[0], 0.0) + max(at - current[1], 0.0)
        current = None
        if rec.what is not None:
            counts[rec.what] += 1
            current = (rec.what, at) if at is not None else None
    if current is not None and state.waiting is not None:
        seconds[current[0]] = seconds.get(current[0], 0.0) + max(now - current[1], 0.0)
    total = CounterMetricFamily("autoresearch_waits", "Waits for something outside the loop, by reason.",
                                labels=["reason"])
    spent = CounterMetricFamily("autoresearch_wait_seconds", "Time spent waiting, by reason.", labels=["reason"])
    waiting = GaugeMetricFamily("autoresearch_waiting", "1 while the loop waits, by reason.", labels=["reason"])
    for what in get_args(WaitWhat):
        total.add_metric([what], counts[what])
        spent.add_metric([what], seconds[what])
        waiting.add_metric([what], 1 if state.waiting is not None and state.waiting.what == what else 0)
    yield from (total, spent, waiting)


def _freshness(source: SessionSource, state: JournalState, now: float) -> Iterator[Metric]:
    signature = source.signature()
    if signature is not None:
        last = signature[2] / 1e9
        yield GaugeMetricFamily("autoresearch_journal_last_record_timestamp_seconds",
                                "When the journal was last appended to (Unix time).", value=last)
        yield GaugeMetricFamily("autoresearch_journal_last_record_age_seconds",
                                "Seconds since the journal's last record.", value=max(now - last, 0.0))
    ends = [t for e in _finished(state) if (t := _seconds(e.phase_at("finished"))) is not None]
    if ends:
        yield GaugeMetricFamily("autoresearch_last_run_finished_timestamp_seconds",
                                "When the last training run ended (Unix time).", value=max(ends))
    yield GaugeMetricFamily("autoresearch_budget_seconds", "The training budget of one run.",
                            value=source.settings.budget)


def _histogram(name: str, doc: str, values: Iterable[float]) -> HistogramMetricFamily:
    data = sorted(values)
    buckets: list[tuple[str, float]] = [(str(b), float(sum(1 for v in data if v <= b))) for b in SECONDS_BUCKETS]
    buckets.append(("+Inf", float(len(data))))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=sum(data))


def _finished(state: JournalState) -> list[Experiment]:
    return [e for e in state.ordered() if e.finished is not None]


def _between(start: str | None, end: str | None) -> float | None:
    a, b = _seconds(start), _seconds(end)
    return None if a is None or b is None else max(b - a, 0.0)


def _seconds(iso: str | None) -> float | None:
    return None if not iso else dt.datetime.fromisoformat(iso).timestamp()


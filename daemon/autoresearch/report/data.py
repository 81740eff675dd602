"""What a report is made of: the rows of results.tsv (one per change, ``ledger.rows``), folded from the
journal, plus the figures derived from them (baseline, best, running best, gains, GPU-hours, agent
cost). The judge's re-measurement runs are no rows: they count in the noise σ and in the GPU-hours.

The journal is the source of truth; a repo that only has a ``results.tsv`` (e.g. one the seed's own
loop wrote) still gets a report, numbered by row, without causes, durations or cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from autoresearch.errors import RepoError
from autoresearch.git.workspace import GitWorkspace
from autoresearch.journal.ledger import RESULTS_FILE, Row, clean_description, parse_results, rows
from autoresearch.journal.records import UsageFields
from autoresearch.journal.store import Experiment, Journal, JournalState
from autoresearch.judging import noise

JOURNAL_FILE = "journal.jsonl"
Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Run:
    """One row (a change and its verdict), as the report needs it."""

    n: int
    status: str  # keep | discard | crash
    metric: float | None
    description: str
    commit: str = ""
    cause: str = ""
    wall_s: float = 0.0
    gpu_count: int = 0
    baseline: bool = False
    confidence: float | None = None
    """A keep's gain ÷ σ at its decision (None: no noise estimate, or not a keep)."""
    claim_flag: bool = False
    """The run's own (claimed) metric was far from the evaluated one."""
    level: float | None = None
    """For a keep judged with the noise rule: the best's metric after it (the mean of its commit's runs)."""
    repeat: bool = False
    """A re-measurement of the best (a baseline repeat): kept, but not an improvement."""


@dataclass(frozen=True)
class Hit:
    """A kept run and what it gained over the keep before it."""

    run: Run
    previous: float
    gain: float  # positive = better, whatever the direction
    gain_pct: float | None


@dataclass
class Ledger:
    metric: str
    direction: Direction
    runs: list[Run] = field(default_factory=list)
    cost_usd: float | None = None  # None: no usage record carried a cost
    input_tokens: int = 0
    output_tokens: int = 0
    pending: int | None = None  # the experiment in flight, if any
    source: str = "none"  # journal | results.tsv | none
    state_dir: Path | None = None
    sigma: float | None = None  # the noise estimate (None: no journal)
    evaluated: bool = False  # a trusted evaluator produced the metrics (else they are self-reported)
    remeasurements: int = 0  # the judge's runs that are no row (baseline repeats, confirmations, fresh bests)
    remeasure_s: float = 0.0  # their wall time times GPUs (one on CPU), for the GPU-hours

    def of(self, status: str) -> list[Run]:
        return [r for r in self.runs if r.status == status]

    def gain(self, old: float, new: float) -> float:
        """How much better ``new`` is than ``old`` (negative when worse)."""
        return old - new if self.direction == "min" else new - old

    @property
    def baseline(self) -> Run | None:
        """The flagged baseline if it produced a metric, else the first keep."""
        flagged = [r for r in self.runs if r.baseline and r.status != "crash" and r.metric is not None]
        if flagged:
            return flagged[0]
        keeps = [r for r in self.of("keep") if r.metric is not None]
        return keeps[0] if keeps else None

    @property
    def best(self) -> Run | None:
        keeps = [r for r in self.of("keep") if r.metric is not None and not r.repeat]
        if not keeps:
            return None
        return max(keeps, key=lambda r: (self.gain(0.0, r.metric or 0.0), -r.n))

    @property
    def improvements(self) -> int:
        """Kept runs other than the baseline and its repeats."""
        base = self.baseline
        return sum(1 for r in self.of("keep") if (base is None or r.n != base.n) and not r.repeat)

    def running_best(self) -> list[tuple[int, float]]:
        """(n, best so far) at each keep, in experiment order: the judge's level (a mean) where recorded."""
        points: list[tuple[int, float]] = []
        for run in self.of("keep"):
            if run.metric is None:
                continue
            if run.level is not None:
                points.append((run.n, run.level))
            elif not points or self.gain(points[-1][1], run.metric) > 0:
                points.append((run.n, run.metric))
            else:
                points.append((run.n, points[-1][1]))
        return points

    def hits(self) -> list[Hit]:
        """Kept runs after the first, ranked by their gain over the previous keep (largest first)."""
        out: list[Hit] = []
        previous: float | None = None
        for run in self.of("keep"):
            if run.metric is None:
                continue
            value = run.metric if run.level is None else run.level
            if previous is not None and not run.repeat:
                gain = self.gain(previous, value)
                pct = 100.0 * gain / abs(previous) if previous else None
                out.append(Hit(run=run, previous=previous, gain=gain, gain_pct=pct))
            previous = value
        return sorted(out, key=lambda h: (-h.gain, h.run.n))

    @property
    def gpu_hours(self) -> float:
        return (sum(r.wall_s * max(r.gpu_count, 1) for r in self.runs) + self.remeasure_s) / 3600.0

    def log_path(self, n: int) -> Path | None:
        return None if self.state_dir is None else self.state_dir / "runs" / str(n) / "run.log"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"


def title(ledger: Ledger) -> str:
    return f"{plural(len(ledger.runs), 'experiment')}, {plural(ledger.improvements, 'kept improvement')}"


def open_workspace(repo: Path) -> GitWorkspace | None:
    """The repo through the daemon's own git adapter; None for a folder that is not a git repo
    (e.g. a copied results.tsv), which still gets a report."""
    try:
        return GitWorkspace.open(repo)
    except RepoError:
        return None


def state_dir(repo: Path) -> Path:
    """``.git/autoresearch`` of the repo (the main repo's, for a linked worktree)."""
    ws = open_workspace(repo)
    return ws.state_dir() if ws is not None else repo / ".git" / "autoresearch"


def load_ledger(repo: Path, metric: str, direction: Direction, folder: Path | None = None) -> Ledger:
    """Read the journal if there is one, else ``results.tsv``, else an empty ledger. ``folder``: an archived
    session's folder (its journal and run logs) instead of the active session's."""
    state = folder or state_dir(repo)
    journal = state / JOURNAL_FILE
    ledger = Ledger(metric=metric, direction=direction, state_dir=state)
    if journal.exists():
        _from_journal(ledger, Journal(journal))
    elif (repo / RESULTS_FILE).exists():
        _from_results(ledger, (repo / RESULTS_FILE).read_text(encoding="utf-8"))
    return ledger


def _from_journal(ledger: Ledger, journal: Journal) -> None:
    ledger.source = "journal"
    state = journal.load()
    for usage in state.all_usage():
        _add_usage(ledger, usage)
    changes = rows(state)
    ledger.runs = [_run(state, r) for r in changes]
    ledger.remeasurements = len(state.completed()) - len(changes)
    every = sum(e.wall_s * max(e.gpu_count, 1) for e in state.completed())
    ledger.remeasure_s = every - sum(r.wall_s * max(r.gpu_count, 1) for r in ledger.runs)
    ledger.sigma = noise.sigma(state)
    ledger.evaluated = any(e.eval_cause is not None for e in state.completed())
    pending = state.pending()
    ledger.pending = None if pending is None else pending.n


def _add_usage(ledger: Ledger, usage: UsageFields) -> None:
    ledger.input_tokens += int(usage.input_tokens)
    ledger.output_tokens += int(usage.output_tokens)
    if usage.cost_usd is not None:
        ledger.cost_usd = (ledger.cost_usd or 0.0) + usage.cost_usd


def _group(state: JournalState, row: Row) -> list[Experiment]:
    """The row's first run and its verdict's run."""
    return [state.experiments[n] for n in sorted({row.n, row.verdict_n})]


def _run(state: JournalState, row: Row) -> Run:
    exp = state.experiments[row.verdict_n]
    status = row.status
    return Run(
        n=row.n,
        status=status,
        metric=row.metric if status != "crash" else None,
        description=row.description,
        commit=row.commit[:7],
        cause=_cause(exp),
        wall_s=exp.wall_s,
        gpu_count=exp.gpu_count,
        baseline=row.baseline or bool(exp.meta.get("baseline")),
        confidence=row.confidence if status == "keep" else None,
        level=row.best_metric if status == "keep" and exp.decision and not row.baseline else None,
        claim_flag=any(e.claim_flag for e in _group(state, row)),
    )


def _cause(exp: Experiment) -> str:
    if exp.verdict.lineage is not None:
        return exp.verdict.lineage  # stale, merge-conflict or rebase: another lane's keep landed meanwhile
    cause = exp.cause
    if exp.status == "crash" and cause in ("", "ok") and exp.metric is None:
        return "no metric" if cause == "ok" else "unknown"
    return cause


def _from_results(ledger: Ledger, text: str) -> None:
    ledger.source = RESULTS_FILE
    for n, row in enumerate(parse_results(text)):
        status = row.get("status", "crash").strip().lower() or "crash"
        values = list(row.values())
        try:
            metric: float | None = float(values[1])
        except (IndexError, ValueError):
            metric = None
        ledger.runs.append(
            Run(
                n=n,
                status=status,
                metric=None if status == "crash" else metric,
                description=clean_description(row.get("description", "")),
                commit=row.get("commit", "")[:7],
                baseline=n == 0,
            )
        )


def last_log_line(path: Path | None, limit: int = 120) -> str:
    """The last non-blank line of a run log (a traceback's last line names the error)."""
    if path is None or not path.is_file():
        return ""
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - 8192))
        tail = fh.read().decode("utf-8", errors="replace")
    lines = [clean_description(line) for line in tail.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return ""
    last = lines[-1]
    return last if len(last) <= limit else last[: limit - 3] + "..."


def journal_ledger(journal: Path, metric: str, direction: Direction) -> Ledger:
    """The ledger of one journal file, the current session's or an archived one's (its runs/ beside it)."""
    ledger = Ledger(metric=metric, direction=direction, state_dir=journal.parent)
    _from_journal(ledger, Journal(journal))
    return ledger

"""The write-ahead journal: one JSON line per event, appended and fsynced *before* the side effect
it announces. Everything else (results.tsv, status, the agents' memory) is derived from it.

An experiment moves through phases, each a record ``{"type": "phase", "n": N, "phase": P, ...}``:
``proposed`` → ``committed`` → ``running`` → ``finished`` → ``recorded``. Other record types:
``session`` (tag, started), ``agent`` (an agent's persistent state, e.g. notes), ``usage`` (the
cost of an iteration whose proposal failed), ``stop`` (why the loop stopped). A torn last line (a
crash mid-write) is skipped on load.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("proposed", "committed", "running", "finished", "evaluated", "checked", "recorded")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


@dataclass
class Experiment:
    """The fold of one experiment's phase records: later fields override earlier ones."""

    n: int
    phase: str
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def done(self) -> bool:
        return self.phase == "recorded"

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    @property
    def metric(self) -> float | None:
        value = self.data.get("metric")
        return None if value is None else float(value)


@dataclass
class JournalState:
    """Everything the journal says, folded."""

    experiments: dict[int, Experiment] = field(default_factory=dict)
    agent_state: dict[str, Any] = field(default_factory=dict)
    session: dict[str, Any] = field(default_factory=dict)
    stops: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    """``usage`` records: iterations whose proposal failed (their cost still counts)."""

    def ordered(self) -> list[Experiment]:
        return [self.experiments[n] for n in sorted(self.experiments)]

    def recorded(self) -> list[Experiment]:
        return [e for e in self.ordered() if e.done]

    def pending(self) -> Experiment | None:
        """The experiment a crash interrupted, if any (at most one exists)."""
        open_ = [e for e in self.ordered() if not e.done]
        return open_[-1] if open_ else None

    def next_n(self) -> int:
        return max(self.experiments, default=-1) + 1

    def best(self) -> Experiment | None:
        """The last keep: keeps are strictly improving, so it is the best."""
        keeps = [e for e in self.recorded() if e.status == "keep"]
        return keeps[-1] if keeps else None


class Journal:
    """Append-only JSONL file with fsync per record.

    ``load`` folds incrementally: it reads only what was appended since the last call (the loop loads
    the state several times per experiment, and a night's journal grows to megabytes). A file that
    shrank or was replaced is folded again from the start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = JournalState()
        self._offset = 0
        self._identity: tuple[int, int] | None = None

    def append(self, record: dict[str, Any]) -> None:
        record = {"at": now_iso(), **record}
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def phase(self, n: int, phase: str, **fields: Any) -> None:
        assert phase in PHASES, phase
        self.append({"type": "phase", "n": n, "phase": phase, **fields})

    def records(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for raw in fh:
                record = _parse(raw)
                if record is not None:
                    yield record

    def load(self) -> JournalState:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._state, self._offset, self._identity = JournalState(), 0, None
            return self._state
        if (st.st_dev, st.st_ino) != self._identity or st.st_size < self._offset:
            self._state, self._offset, self._identity = JournalState(), 0, (st.st_dev, st.st_ino)
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        complete = data.rfind(b"\n") + 1  # a torn last line is left for a later (repaired) read
        for raw in data[:complete].splitlines():
            record = _parse(raw)
            if record is not None:
                _fold(self._state, record)
        self._offset += complete
        return self._state

    def repair_tail(self) -> None:
        """Cut a torn last line so the next append starts on a fresh line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with self.path.open("r+b") as fh:
                fh.truncate(cut)
                os.fsync(fh.fileno())


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # a torn write from a crash: the action it announced never started
    return record if isinstance(record, dict) else None


def _fold(state: JournalState, rec: dict[str, Any]) -> None:
    kind = rec.get("type")
    if kind == "phase":
        _fold_phase(state, rec)
    elif kind == "agent":
        state.agent_state.update(rec.get("state", {}))
    elif kind == "session":
        state.session.update({k: v for k, v in rec.items() if k != "type"})
    elif kind == "stop":
        state.stops.append(rec)
    elif kind == "usage":
        state.skipped.append(rec)


def _fold_phase(state: JournalState, rec: dict[str, Any]) -> None:
    n = int(rec["n"])
    fields = {k: v for k, v in rec.items() if k not in ("type", "n", "phase", "at")}
    exp = state.experiments.get(n)
    if exp is None or rec["phase"] == "proposed":
        # A fresh proposal for n replaces any earlier unrecorded attempt at the same number.
        exp = state.experiments[n] = Experiment(n=n, phase="proposed", data={})
    exp.phase = rec["phase"]
    exp.data.update(fields)
    exp.data[f"{rec['phase']}_at"] = rec.get("at")

"""The write-ahead journal: one JSON line per event, appended and fsynced *before* the side effect
it announces. Everything else (results.tsv, status, the agents' memory) is derived from it.

An experiment moves through phases, each a record ``{"type": "phase", "n": N, "phase": P, ...}``:
``proposed`` → ``committed`` → ``running`` → ``finished`` (→ ``evaluated`` → ``checked``, when an
evaluator or checks are configured) → ``recorded``. Other record types:
``session`` (tag, started), ``agent`` (an agent's persistent state, e.g. notes), ``usage`` (the
cost and error of an iteration whose proposal failed), ``wait`` (the loop waits for the engine, a GPU
or Slurm), ``stop`` (why the loop stopped), ``draft``/``draft_drop`` (proposals drafted ahead, and
those that will not run), ``confirm_drop`` (a confirmation the judge gave up), ``setup`` (the repo's
setup ran), ``config`` (the pinned measured settings). The models are in ``records``; each record is validated when
folded. A torn last line (a crash mid-write) is skipped on load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from autoresearch.errors import JournalError, JournalReplaced
from autoresearch.journal.fold import Experiment, JournalState, fold
from autoresearch.journal.records import PHASES, Phase, PhaseRecord, Record, model_of, reading_model

log = structlog.get_logger("autoresearch.journal")

__all__ = ["PHASES", "Experiment", "Journal", "JournalState", "now_iso"]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def now_when() -> str:
    """A commit date fixed at proposal time, so re-committing after a crash gives the same sha."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def content_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Journal:
    """Append-only JSONL file with fsync per record.

    ``load`` folds incrementally: it reads only what was appended since the last call (the loop loads
    the state several times per experiment, and a night's journal grows to megabytes). A file that
    was replaced, removed or cut after a load is an error (``JournalReplaced``), never re-read.

    ``lane`` is None here; a ``LaneJournal`` writes its lane into every phase record.

    Thread-safe: with several lanes, appends are serialized by one writer lock (a record is one
    ``write`` of a whole line), and ``load`` returns a snapshot no other thread mutates."""

    lane: int | None = None

    def __init__(self, path: Path) -> None:
        self.path = path
        self._state = JournalState()
        self._offset = 0
        self._lines = 0
        self._identity: tuple[int, int] | None = None
        self.lock = threading.RLock()
        """Held for every append and load; hold it to read-then-append as one step (e.g. a new id)."""

    def append(self, record: Record | Mapping[str, Any]) -> None:
        """Append one record, fsynced. A model instance was validated when it was built; a mapping is
        validated here against its model. Either way an invalid record or an extra key raises
        ``ValueError`` before anything is written: the file only ever holds records that load."""
        typed = record if isinstance(record, Record) else _strict(dict(record))
        data = {"at": now_iso(), **typed.model_dump(mode="json", exclude_unset=True)}
        line = json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)

    def phase(self, n: int, phase: Phase, **fields: Any) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        self.append(_strict({"type": "phase", "n": n, "phase": phase, **fields}))

    def proposed(self, n: int, *, content: str, **fields: Any) -> None:
        """The ``proposed`` phase of experiment ``n``: its target's hash is derived here, and unless given,
        the commit date is now and the seed is ``n``."""
        fields.setdefault("when", now_when())
        fields.setdefault("seed", n)
        self.phase(n, "proposed", content=content, content_sha256=content_sha256(content), **fields)

    @property
    def without_lane(self) -> Journal:
        """The journal without a lane (what a lane's journal writes through)."""
        return self

    def for_lane(self, lane: int) -> LaneJournal:
        """This journal, with ``lane`` written into every phase record."""
        return LaneJournal(self, lane)

    def records(self) -> Iterator[dict[str, Any]]:
        """The raw records (for readers that need every record, e.g. the spend of voided proposals)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for raw in fh:
                record = _parse(raw)
                if record is not None:
                    yield record

    def load(self) -> JournalState:
        with self.lock:
            return self._load().copy()

    def _load(self) -> JournalState:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            if self._identity is not None:
                raise JournalReplaced(self._replaced("was removed")) from None
            return self._state
        identity = (st.st_dev, st.st_ino)
        if self._identity is not None and identity != self._identity:
            raise JournalReplaced(self._replaced("was replaced by another file"))
        if st.st_size < self._offset:
            raise JournalReplaced(self._replaced(f"shrank from {self._offset} to {st.st_size} bytes"))
        self._identity = identity
        with self.path.open("rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        complete = data.rfind(b"\n") + 1  # a torn last line is left for a later (repaired) read
        for raw in data[:complete].splitlines():
            self._lines += 1
            record = _parse(raw)
            if record is not None:
                self._fold(record)
        self._offset += complete
        return self._state

    def _replaced(self, what: str) -> str:
        return (f"{self.path} {what} while this process was following it (did `autoresearch init` run, or "
                "was it moved?); stopping rather than mixing two sessions. Start `autoresearch run` again.")

    def _fold(self, raw: dict[str, Any]) -> None:
        kind = str(raw.get("type"))
        model = model_of(raw)
        if model is None:
            log.warning("journal.unknown_record", path=str(self.path), line=self._lines, type=kind,
                        phase=raw.get("phase"))
            return
        try:  # lenient: keys an older or newer version wrote load (see ``records``)
            record = reading_model(model).model_validate(raw)
        except ValidationError as exc:
            raise JournalError(f"{self.path} line {self._lines}: invalid {kind} record ({_first_error(exc)})") from exc
        fold(self._state, record)

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


def _strict(raw: dict[str, Any]) -> Record:
    """``raw`` as its record model, extra keys forbidden (what a writer may append)."""
    model = model_of(raw)
    if model is None:
        raise ValueError(f"no record model for type={raw.get('type')!r} phase={raw.get('phase')!r}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"invalid {raw.get('type')} record not written ({_first_error(exc)})") from exc


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # a torn write from a crash: the action it announced never started
    return record if isinstance(record, dict) else None


class LaneJournal(Journal):
    """The shared journal as one lane writes it: same file, same lock, same folded state."""

    def __init__(self, shared: Journal, lane: int) -> None:
        super().__init__(shared.path)
        self._shared = shared
        self.lock = shared.lock
        self.lane = lane

    @property
    def without_lane(self) -> Journal:
        return self._shared

    def append(self, record: Record | Mapping[str, Any]) -> None:
        if isinstance(record, PhaseRecord) and "lane" not in record.model_fields_set:
            record = record.model_copy(update={"lane": self.lane})  # a valid int: no new validation needed
        self._shared.append(record)

    def load(self) -> JournalState:
        return self._shared.load()

    def phase(self, n: int, phase: Phase, **fields: Any) -> None:
        super().phase(n, phase, lane=self.lane, **fields)

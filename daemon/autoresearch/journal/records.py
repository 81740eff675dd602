"""The journal's record types: one pydantic model per record, validated when the journal is folded.

Every line of ``journal.jsonl`` is one record ``{"type": ..., "at": ..., ...}``; phase records carry
``"type": "phase"``, the experiment number ``n`` and the ``phase``. Required fields are required: a
record that lacks one is an error when folded (``JournalError``), never a ``None`` handed to git.

Writing is strict, reading lenient. The models forbid extra keys (``extra="forbid"``): a writer builds
a model instance, so a misspelt or untyped key fails where it is written, before anything reaches the
file (``Journal.append``). Reading validates each line with ``reading_model(model)``, the same model with
extra keys allowed: a key an older version wrote, or one a newer version or another branch added, still
loads; phase records hand such keys to the fold (``Experiment.extra``), the others ignore them. A record
*type* this version does not know is skipped with a warning by the fold.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from autoresearch.ops.safetext import one_line

Description = Annotated[str, AfterValidator(one_line)]
"""An agent's description, cleaned of control and format characters also when an older journal holds them."""

Phase = Literal["proposed", "committed", "running", "finished", "evaluated", "checked", "recorded"]
PHASES: tuple[Phase, ...] = ("proposed", "committed", "running", "finished", "evaluated", "checked", "recorded")
WaitWhat = Literal["engine", "gpu", "runner", "slurm"]
RowStatus = Literal["keep", "discard", "crash"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    at: str | None = None
    """When the record was appended (ISO 8601, UTC, milliseconds)."""


class UsageFields(BaseModel):
    """What one proposal cost (``agents.base.Usage.as_dict``); absent counts are zero, an absent cost is
    unknown (None)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    input_tokens: float = 0
    output_tokens: float = 0
    cache_read_tokens: float = 0
    cache_write_tokens: float = 0
    cost_usd: float | None = None


class SessionRecord(Record):
    type: Literal["session"]
    tag: str
    branch: str | None = None
    base: str | None = None
    """The commit the session branch started from."""


class AgentRecord(Record):
    type: Literal["agent"]
    n: int | None = None
    state: dict[str, Any]
    """Keys of the agent's persistent state; later records update earlier ones key by key."""


class UsageRecord(Record):
    """An iteration whose proposal failed: its cost still counts, its error is shown by ``status``."""

    type: Literal["usage"]
    n: int | None = None
    """A label of the attempt (for a draft, the number it would have got next); not an experiment's."""
    error: str = ""
    usage: UsageFields = Field(default_factory=UsageFields)


class ConfigRecord(Record):
    """The values of the settings that decide what is measured, pinned for the session (``session_config``)."""

    type: Literal["config"]
    measured: dict[str, Any]


class StopRecord(Record):
    type: Literal["stop"]
    reason: str
    exit_code: int = 0
    """0 for a limit or a signal; else the code of the error that stopped the loop."""


class WaitRecord(Record):
    """The loop waits for something outside it (``what``), or, with ``what`` null, the wait is over."""

    type: Literal["wait"]
    what: WaitWhat | None
    reason: str = ""
    lane: int | None = None
    """The lane that waits while the others go on; None: the whole loop."""


class PhaseRecord(Record):
    type: Literal["phase"]
    n: int = Field(ge=0)
    lane: int | None = None
    """The lane the experiment runs in (see ``lanes``); None in journals written before lanes."""


class Proposed(PhaseRecord):
    phase: Literal["proposed"]
    parent: str
    """The commit the proposal edits (the best so far; for a baseline, the branch head)."""
    description: Description
    content: str
    """The complete target file."""
    when: str
    """The commit date, fixed here so a re-commit after a crash gives the same sha."""
    baseline: bool = False
    content_sha256: str | None = None
    agent: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    usage: UsageFields = Field(default_factory=UsageFields)
    propose_s: float | None = None
    draft: int | None = None
    """The queued draft this experiment was taken from (the draft leaves the queue)."""
    rebase_of: int | None = None
    """The experiment whose change this one re-applies onto a newer best (measured on its own)."""
    seed: int | None = None
    """AUTORESEARCH_SEED of the run (its number; absent in journals before the noise-aware judge)."""
    measure_commit: str | None = None
    """A repeat or confirmation: the commit measured again (no new commit is made)."""
    confirm_of: int | None = None
    """The experiment whose commit a repeat or confirmation measures again."""
    for_candidate: int | None = None
    """A fresh run of the best, made for the candidate first measured at this experiment."""
    adopted: str | None = None
    """A commit someone else put on the session branch, measured as the new base (``branchsync``)."""


class Committed(PhaseRecord):
    phase: Literal["committed"]
    commit: str


class Running(PhaseRecord):
    phase: Literal["running"]
    handle: dict[str, Any]
    """What the runner needs to find the run again: process group and start time, or container id."""


class Finished(PhaseRecord):
    phase: Literal["finished"]
    cause: str
    """ok, exit:<code>, timeout, oom, violation, write_cap, docker, interrupted; with runner = slurm also
    cancelled (by someone else, reason in ``detail``), node_fail/preempted/boot_fail (after the last
    attempt) and slurm (a job that ended without a result)."""
    exit_code: int | None = None
    metric: float | None = None
    memory_gb: float = 0.0
    wall_s: float = 0.0
    kill_latency_s: float | None = None
    gpu_count: int = 0
    training_seconds: float | None = None
    detail: str | None = None
    log_truncated: bool = False
    claimed: float | None = None
    """The metric the run printed itself; with an evaluator only a claim (``metric`` is then null)."""
    queued_s: float | None = None
    """Seconds the run's job waited in a cluster's queue before it started (runner = slurm; not budget)."""


class Evaluated(PhaseRecord):
    """The trusted evaluator's result: its metric replaces the run's own."""

    phase: Literal["evaluated"]
    metric: float | None = None
    eval_cause: str
    """ok, exit:<code>, timeout, ... of the evaluator run."""
    eval_wall_s: float = 0.0
    cause: str | None = None
    """eval:<why> when the evaluation failed (the experiment then counts as a crash); null when it worked."""
    claim_gap: float | None = None
    """|claimed − evaluated| ÷ |evaluated| (null without a claim)."""
    claim_flag: bool = False
    """The claim was more than 5 % away from the evaluated metric."""


class Checked(PhaseRecord):
    """The repo's checks on a would-be keep."""

    phase: Literal["checked"]
    checks_ok: bool
    check_cause: str


class Recorded(PhaseRecord):
    phase: Literal["recorded"]
    status: RowStatus
    row_description: str = ""
    best_commit: str | None = None
    best_metric: float | None = None
    """The best's level after this row: with the noise-aware judge, the mean of its commit's runs."""
    decision: Literal["keep", "discard", "crash", "remeasure", "rebase"] | None = None
    """The judge's action (remeasure: a `confirm:` run follows); null in journals before the judge."""
    reason: str | None = None
    """Why (first, repeat, better, within noise, simplification, less memory, memory, checks, ...)."""
    sigma: float | None = None
    """The noise σ the decision used (from runs before this one)."""
    z: float | None = None
    gain: float | None = None
    """Direction-aware improvement of this commit's mean over the best's."""
    threshold: float | None = None
    """z·σ·√(1/k + 1/m): the gain needed to keep outright."""
    confidence: float | None = None
    """gain ÷ σ (null without a noise estimate)."""
    mean: float | None = None
    """The mean of this commit's measurements, this run included."""
    lineage: str | None = None
    """With lanes, a run whose parent was no longer the best: ``rebase``, ``stale`` or ``merge-conflict``
    (see ``judge.lineage``); None when its parent was the best."""
    rebased_as: int | None = None
    """The experiment that re-applies this run's change onto the newer best (``lineage`` rebase)."""


class DraftRecord(Record):
    """A proposal drafted ahead while lanes train: queued until a lane takes it (its ``proposed``
    record names the draft) or it is dropped. Journaled, so a kill -9 does not lose the queue."""

    type: Literal["draft"]
    id: int = Field(ge=0)
    parent: str
    """The best when the draft was made (its edit is against this commit)."""
    description: Description
    content: str
    agent: str | None = None
    content_sha256: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    usage: UsageFields = Field(default_factory=UsageFields)
    propose_s: float | None = None


class DraftDropRecord(Record):
    """A draft that will not run: its edit conflicts with a newer best (``merge-conflict``) or repeats
    another (``duplicate``)."""

    type: Literal["draft_drop"]
    id: int = Field(ge=0)
    reason: str


class ConfirmDropRecord(Record):
    """The judge stopped confirming ``candidate``: its parent's fresh runs kept failing (``gave up``), so no
    confirmation pair can be made. Its row is then written: a discard, "[confirmation given up]"; it never
    becomes a keep."""

    type: Literal["confirm_drop"]
    candidate: int = Field(ge=0)
    reason: str


class SetupRecord(Record):
    """The repo's ``setup`` ran (at init, or before experiment ``n`` because its inputs changed)."""

    type: Literal["setup"]
    n: int | None = None
    """The experiment it ran before; None: at init."""
    trigger: list[str] = Field(default_factory=list)
    """Why it ran: the changed input files, or ``command``, ``runner``, ``missing environment``."""
    cause: str = "ok"
    """How it ended (``ok``, ``exit:<code>``, ...)."""
    wall_s: float | None = None


PHASE_MODELS: dict[str, type[PhaseRecord]] = {
    "proposed": Proposed,
    "committed": Committed,
    "running": Running,
    "finished": Finished,
    "evaluated": Evaluated,
    "checked": Checked,
    "recorded": Recorded,
}
OTHER_MODELS: dict[str, type[Record]] = {
    "session": SessionRecord,
    "agent": AgentRecord,
    "usage": UsageRecord,
    "stop": StopRecord,
    "wait": WaitRecord,
    "draft": DraftRecord,
    "draft_drop": DraftDropRecord,
    "confirm_drop": ConfirmDropRecord,
    "setup": SetupRecord,
    "config": ConfigRecord,
}


R = TypeVar("R", bound=Record)


@functools.cache
def reading_model(model: type[R]) -> type[R]:
    """``model`` as it reads a journal line: extra keys allowed (in ``model_extra``), everything else the
    same; a subclass, so the fold's ``isinstance`` checks hold."""
    config = ConfigDict(extra="allow", frozen=True)
    return type(model.__name__, (model,), {"model_config": config, "__module__": __name__,
                                          "__qualname__": f"reading_model({model.__qualname__})"})


def model_of(raw: dict[str, Any]) -> type[Record] | None:
    """The model of a raw record (by its ``type``, and ``phase`` for phase records); None if unknown."""
    kind = str(raw.get("type"))
    if kind == "phase":
        return PHASE_MODELS.get(str(raw.get("phase")))
    return OTHER_MODELS.get(kind)

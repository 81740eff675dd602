"""What the daemon's operations ask of a Slurm cluster outside a run: does the controller answer
(``scontrol ping``, the runner's own check), would it accept the lanes' jobs (``sbatch --test-only``), and
where are the jobs the journal names (``squeue --states=all``). ``status`` and ``init`` use it; the runner
drives its own jobs (``runners/slurm*``) and the loop waits out an outage through the runner's check.

Slurm's commands run through the runner's one caller (``slurm_cli.call``), so failures are translated
once: a controller that does not answer is ``SlurmUnavailable`` (waited out by the loop), a Slurm client
missing on this host a ``ConfigError`` (exit 2), anything else ``SlurmError`` with Slurm's own message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autoresearch.errors import SlurmError, SlurmUnavailable
from autoresearch.ops.config import Settings
from autoresearch.runners.slurm_cli import RealSlurm, call

CALL_TIMEOUT_S = 30.0
_FORMAT = "%i|%T|%N|%r"


@dataclass(frozen=True)
class QueuedJob:
    """One job as ``squeue`` lists it."""

    job_id: str
    state: str
    """Slurm's state: PENDING, RUNNING, COMPLETING, COMPLETED, CANCELLED, ..."""
    node: str = ""
    reason: str = ""
    """Why it waits (Resources, Priority, ...) or ``None``."""


class SlurmQueue(Protocol):
    """The controller as operations see it (``SlurmCommands``; ``FakeSlurmQueue`` in tests)."""

    def ping(self) -> None:
        """Raise ``SlurmUnavailable`` unless the controller answers."""

    def jobs(self, job_ids: Sequence[str]) -> dict[str, QueuedJob]:
        """The listed jobs the controller still knows, by id (ended ones until it forgets them)."""

    def test_submit(self, args: Sequence[str]) -> str:
        """``sbatch --test-only`` with ``args``: Slurm's answer (where and when such a job would start)."""


@dataclass
class SlurmCommands:
    """Slurm's client commands on this host's PATH."""

    timeout_s: float = CALL_TIMEOUT_S

    @classmethod
    def from_config(cls, settings: Settings) -> SlurmCommands:
        return cls(timeout_s=max(CALL_TIMEOUT_S, 5 * settings.slurm.poll_s))

    def ping(self) -> None:
        RealSlurm(self.timeout_s).ping()  # scontrol ping asks the controller itself (squeue -j 0 never does)

    def jobs(self, job_ids: Sequence[str]) -> dict[str, QueuedJob]:
        if not job_ids:
            return {}
        try:
            out = call(["squeue", "-h", "--states=all", "-o", _FORMAT, "-j", ",".join(job_ids)], self.timeout_s)
        except SlurmError as exc:
            if "invalid job id" in str(exc).lower():  # one id, forgotten by the controller
                return {}
            raise
        return {job.job_id: job for job in map(parse_line, out.splitlines()) if job is not None}

    def test_submit(self, args: Sequence[str]) -> str:
        return call(["sbatch", "--test-only", *args, "--wrap", "true"], self.timeout_s, merge=True).strip()


def parse_line(line: str) -> QueuedJob | None:
    """One ``squeue -o '%i|%T|%N|%r'`` line."""
    fields = line.strip().split("|")
    if len(fields) != 4 or not fields[0]:
        return None
    node = "" if fields[2] in ("", "(null)", "None assigned") else fields[2]
    return QueuedJob(fields[0], fields[1], node, "" if fields[3] == "None" else fields[3])


@dataclass
class FakeSlurmQueue:
    """A controller in memory: ``down`` makes every call raise ``SlurmUnavailable``."""

    known: dict[str, QueuedJob] = field(default_factory=dict)
    down: str | None = None
    refuse: str | None = None
    """Set: ``test_submit`` raises ``SlurmError`` with this message."""
    submitted: list[list[str]] = field(default_factory=list)

    def ping(self) -> None:
        if self.down is not None:
            raise SlurmUnavailable(self.down)

    def jobs(self, job_ids: Sequence[str]) -> dict[str, QueuedJob]:
        self.ping()
        return {i: self.known[i] for i in job_ids if i in self.known}

    def test_submit(self, args: Sequence[str]) -> str:
        self.ping()
        self.submitted.append(list(args))
        if self.refuse is not None:
            raise SlurmError(f"sbatch --test-only: {self.refuse}")
        return "sbatch: Job 1 to start at 2026-01-01T00:00:00 using 1 processors on nodes n1 in partition debug"

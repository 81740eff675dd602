"""What the daemon's operations ask of a Slurm cluster outside a run: does the controller answer
(``squeue``), would it accept the lanes' jobs (``sbatch --test-only``), and where are the jobs the
journal names (``squeue --states=all``). ``status``, ``init`` and the loop's waiter use it; the runner
drives its own jobs (``runners/slurm*``).

Failures are translated here, once: a controller that does not answer is ``SlurmUnavailable`` (waited
out by the loop), a Slurm client missing on this host a ``ConfigError`` (exit 2), anything else
``SlurmRejected`` with Slurm's own message.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from autoresearch.config import Settings, SlurmSettings
from autoresearch.errors import ConfigError, RunnerError, SlurmUnavailable

CALL_TIMEOUT_S = 30.0
DOWN = ("unable to contact slurm controller", "socket timed out", "connection refused",
        "zero bytes were transmitted", "communications connection failure", "is down")
"""Phrases of Slurm's errors that mean the controller is down or restarting (not the request's fault)."""
_FORMAT = "%i|%T|%N|%r"


class SlurmRejected(RunnerError):
    """Slurm answered and refused (a partition, account or resource it does not know)."""


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


def resource_args(slurm: SlurmSettings) -> list[str]:
    """The sbatch options a lane's job asks for, from ``[slurm]``."""
    pairs = (("--partition", slurm.partition), ("--account", slurm.account), ("--qos", slurm.qos),
             ("--gres", slurm.gres), ("--cpus-per-task", slurm.cpus_per_task), ("--mem", slurm.mem))
    return [f"{flag}={value}" for flag, value in pairs if value is not None] + list(slurm.extra_args)


@dataclass
class SlurmCommands:
    """Slurm's client commands on this host's PATH."""

    timeout_s: float = CALL_TIMEOUT_S

    @classmethod
    def from_config(cls, settings: Settings) -> SlurmCommands:
        return cls(timeout_s=max(CALL_TIMEOUT_S, 5 * settings.slurm.poll_s))

    def ping(self) -> None:
        # scontrol ping asks the controller itself (squeue -j 0 fails in the client, never asking it)
        self._call(["scontrol", "ping"])

    def jobs(self, job_ids: Sequence[str]) -> dict[str, QueuedJob]:
        if not job_ids:
            return {}
        try:
            out = self._call(["squeue", "-h", "--states=all", "-o", _FORMAT, "-j", ",".join(job_ids)])
        except SlurmRejected as exc:
            if "invalid job id" in str(exc).lower():  # one id, forgotten by the controller
                return {}
            raise
        return {job.job_id: job for job in map(parse_line, out.splitlines()) if job is not None}

    def test_submit(self, args: Sequence[str]) -> str:
        return self._call(["sbatch", "--test-only", *args, "--wrap", "true"], merge=True).strip()

    def _call(self, argv: list[str], ok_codes: tuple[int, ...] = (0,), merge: bool = False) -> str:
        if shutil.which(argv[0]) is None:
            raise ConfigError(f"{argv[0]} is not on PATH: runner = \"slurm\" needs Slurm's client commands on the "
                              "daemon's host (Debian: apt-get install slurm-client) and the cluster's slurm.conf")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise SlurmUnavailable(f"{argv[0]}: no answer in {self.timeout_s:g} s") from exc
        except OSError as exc:
            raise SlurmRejected(f"{argv[0]} could not run: {exc}") from exc
        lines = (done.stderr + "\n" + done.stdout).splitlines()
        said = [line.strip() for line in lines if any(c.isalpha() for c in line)]
        message = "\n".join(said) or f"exit {done.returncode}"  # scontrol ping's banner of stars left out
        if done.returncode in ok_codes:
            return done.stdout + done.stderr if merge else done.stdout
        if any(phrase in message.lower() for phrase in DOWN):
            raise SlurmUnavailable(f"{argv[0]}: {message.splitlines()[0]}")
        raise SlurmRejected(f"{' '.join(argv[:2])}: {message}")


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
    """Set: ``test_submit`` raises ``SlurmRejected`` with this message."""
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
            raise SlurmRejected(f"sbatch --test-only: {self.refuse}")
        return "sbatch: Job 1 to start at 2026-01-01T00:00:00 using 1 processors on nodes n1 in partition debug"

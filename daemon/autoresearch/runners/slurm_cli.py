"""The Slurm CLI, driven as it is (``sbatch --parsable``, ``scontrol -o show job``, ``squeue --json``,
``sacct -c``, ``scancel``): the one place that runs Slurm's commands and reads their output.

Failures are translated here, once: a controller that does not answer is ``SlurmUnavailable`` (an
``EngineUnavailable``: the loop waits it out like a Docker engine that is down), a missing command a
``ConfigError``, anything else a ``SlurmError`` with Slurm's own message. Reads are retried a few times
through ``retry.retrying``; ``sbatch`` is not (a timed-out submission may have reached the controller:
the runner cancels such a stray by its name before it submits again).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from autoresearch.errors import ConfigError, SlurmError, SlurmUnavailable
from autoresearch.ops.retry import retrying

CALL_TIMEOUT_S = 60.0
DOWN = ("unable to contact slurm controller", "socket timed out", "connection refused", "zero bytes were transmitted",
        "slurm_load_jobs error: unable", "communications connection failure", "slurmctld", "is down")
"""Phrases of Slurm's errors that mean the controller is down or restarting (waited out, not fatal)."""
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                   "OUT_OF_MEMORY", "DEADLINE", "SPECIAL_EXIT", "REVOKED"})
NOT_THE_SCRIPTS_FAULT = frozenset({"NODE_FAIL", "PREEMPTED", "BOOT_FAIL"})
"""End states that resubmit the run as a fresh attempt: the node or the scheduler ended it."""


@dataclass(frozen=True)
class JobInfo:
    """What the runner needs of one job, from ``scontrol`` (or ``sacct`` once the controller forgot it)."""

    job_id: str
    name: str
    state: str
    """Slurm's base state (PENDING, RUNNING, COMPLETED, CANCELLED, NODE_FAIL, ...)."""
    reason: str = ""
    node: str = ""
    """The node it runs on; empty while it is queued (or if it never ran)."""
    start: float | None = None
    """Epoch seconds it started (None while queued and when it ended without running)."""
    end: float | None = None
    held: bool = False

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def running(self) -> bool:
        return self.state in ("RUNNING", "COMPLETING", "SUSPENDED") or (self.ended and self.start is not None)


class Slurm(Protocol):
    """The Slurm operations the runner uses (``RealSlurm``; ``slurm_fake.FakeSlurm`` in unit tests)."""

    def submit(self, script: str, args: Sequence[str]) -> str:
        """Submit ``script`` (a path) held, with ``args``; returns the job id."""

    def release(self, job_id: str) -> None:
        """Let a held job be scheduled."""

    def job(self, job_id: str) -> JobInfo | None:
        """The job's state; None when Slurm no longer knows it."""

    def jobs(self, name_prefix: str) -> list[JobInfo]:
        """Every job whose name starts with ``name_prefix`` that the controller still lists."""

    def cancel(self, job_id: str, signal: str | None = None) -> None:
        """``scancel`` (with ``--signal``: only send that signal to the job's processes)."""

    def ping(self) -> None:
        """Raise ``SlurmUnavailable`` unless the controller answers."""


@dataclass
class RealSlurm:
    """The Slurm commands on PATH."""

    timeout_s: float = CALL_TIMEOUT_S

    def submit(self, script: str, args: Sequence[str]) -> str:
        out = self._call(["sbatch", "--parsable", "--hold", *args, script])
        return out.strip().split(";")[0]

    def release(self, job_id: str) -> None:
        self._read(["scontrol", "release", job_id])

    def job(self, job_id: str) -> JobInfo | None:
        try:
            text = self._read(["scontrol", "-o", "show", "job", job_id])
        except SlurmError as exc:
            if "invalid job id" not in str(exc).lower():
                raise
            return self._accounted(job_id)
        return parse_scontrol(text)

    def jobs(self, name_prefix: str) -> list[JobInfo]:
        data = json.loads(self._read(["squeue", "--json"]))  # 22.05 ignores -j/-n with --json: filtered here
        return [info for info in map(parse_squeue, data.get("jobs", [])) if info.name.startswith(name_prefix)]

    def cancel(self, job_id: str, signal: str | None = None) -> None:
        self._read(["scancel", *([f"--signal={signal}", "--full"] if signal else []), job_id])

    def ping(self) -> None:
        out = self._read(["scontrol", "ping"], ok_codes=(0, 1))
        if " is UP" not in out:  # "Slurmctld(primary) at vm is DOWN", then a banner of stars
            raise SlurmUnavailable(f"scontrol: {out.strip().splitlines()[0] if out.strip() else 'ping failed'}")

    def _accounted(self, job_id: str) -> JobInfo | None:
        """A job the controller forgot (after MinJobAge), from the completion log (``sacct -c``)."""
        try:
            text = self._read(["sacct", "-c", "-n", "-P", "-j", job_id, "-o", "JobID,JobName,State,NodeList,Start,End"])
        except SlurmError:
            return None
        for line in text.splitlines():
            fields = line.split("|")
            if len(fields) >= 6 and fields[0] == job_id:
                return JobInfo(job_id, fields[1], fields[2].split()[0], node=_node(fields[3]),
                               start=_epoch(fields[4]), end=_epoch(fields[5]))
        return None

    def _read(self, argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> str:
        for attempt in retrying(retry_on=(SlurmUnavailable,), attempts=3, initial_s=0.5, max_wait_s=4.0,
                                what=argv[0]):
            with attempt:
                return self._call(argv, ok_codes)
        raise AssertionError("unreachable: retrying re-raises")  # pragma: no cover

    def _call(self, argv: list[str], ok_codes: tuple[int, ...] = (0,)) -> str:
        return call(argv, self.timeout_s, ok_codes)


def call(argv: list[str], timeout_s: float, ok_codes: tuple[int, ...] = (0,), merge: bool = False) -> str:
    """Run one Slurm client command: its stdout (with ``merge``, stdout and stderr). The one translation of
    its failures: no answer -> ``SlurmUnavailable``, a missing client -> ``ConfigError``, else ``SlurmError``."""
    if shutil.which(argv[0]) is None:
        raise ConfigError(f"{argv[0]} is not on PATH: runner = \"slurm\" needs Slurm's client commands on the "
                          "daemon's host (Debian: apt-get install slurm-client) and the cluster's slurm.conf")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SlurmUnavailable(f"{' '.join(argv[:2])} got no answer in {timeout_s:g} s") from exc
    except OSError as exc:
        raise SlurmError(f"{argv[0]} could not run: {exc}") from exc
    if done.returncode in ok_codes:
        return done.stdout + done.stderr if merge else done.stdout
    said = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if any(c.isalpha() for c in line)]
    message = "\n".join(said) or f"exit {done.returncode}"  # scontrol ping's banner of stars left out
    if any(phrase in message.lower() for phrase in DOWN):
        raise SlurmUnavailable(f"the Slurm controller does not answer ({argv[0]}): {message.splitlines()[0]}")
    raise SlurmError(f"{' '.join(argv[:2])} failed: {message}")


_PAIR = re.compile(r"(\w[\w/:]*)=(\S*)")


def parse_scontrol(text: str) -> JobInfo | None:
    """One job's ``scontrol -o show job`` line."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    fields = dict(_PAIR.findall(line))
    if "JobId" not in fields:
        return None
    node = _node(fields.get("NodeList", ""))
    state = fields.get("JobState", "UNKNOWN")
    return JobInfo(
        job_id=fields["JobId"], name=fields.get("JobName", ""), state=state, reason=fields.get("Reason", ""),
        node=node, start=_epoch(fields.get("StartTime", "")) if node else None,
        end=_epoch(fields.get("EndTime", "")) if state in ENDED else None, held=fields.get("Reason") == "JobHeldUser",
    )


def parse_squeue(job: dict[str, object]) -> JobInfo:
    """One entry of ``squeue --json``'s ``jobs`` (Slurm 22.05's layout)."""
    node = _node(str(job.get("nodes") or ""))
    start = job.get("start_time")
    return JobInfo(
        job_id=str(job.get("job_id")), name=str(job.get("name") or ""), state=str(job.get("job_state") or "UNKNOWN"),
        reason=str(job.get("state_reason") or ""), node=node,
        start=float(start) if node and isinstance(start, int | float) and start > 0 else None,
        held=job.get("state_reason") == "JobHeldUser",
    )


def _node(value: str) -> str:
    return "" if value in ("", "(null)", "None", "None assigned") else value


def _epoch(value: str) -> float | None:
    """Slurm's local time (``2026-12-02T21:18:56``) as epoch seconds; None for Unknown/None."""
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").astimezone().timestamp()  # naive: local time
    except ValueError:
        return None

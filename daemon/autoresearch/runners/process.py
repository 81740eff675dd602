"""Runs an experiment as local processes, on the daemon's own clock: in a bubblewrap sandbox, or
(``process.sandbox = "none"``, unsafe with an LLM or command agent) as a bare process group.

The run starts from its snapshot (the commit's files, never the working tree), with a clean
environment from the allow-list. At budget + grace the log pump's gate shuts (later output is never
read), every process in the run gets SIGTERM, and the whole sandbox is SIGKILLed after
``process.kill_timeout_s``. A sandbox dies with its pid 1 (the kernel kills its pid namespace: setsid
children and double-forked orphans included) and, through ``--die-with-parent``, with the daemon.
The journaled handle (PIDs + kernel start times) lets a restarted daemon kill a run left behind; the
owner mark in bwrap's own environment lets it find one that was never journaled.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from autoresearch.errors import ConfigError, RunnerError
from autoresearch.ops.config import ProcessSettings, Settings
from autoresearch.runners import limits_notice, process_box, process_limits, procs
from autoresearch.runners.base import CappedLog, OnStarted, RunOutcome, RunSpec
from autoresearch.runners.bwrap import check_bwrap
from autoresearch.runners.cgroups import Enforcer, Limits, RunGroup, Unavailable
from autoresearch.runners.docker_spec import parse_size
from autoresearch.runners.ending import classify, exit_cause
from autoresearch.runners.enforcers import NoGroup, Rlimits, detect
from autoresearch.runners.environment import allowed_environment
from autoresearch.runners.gpu import GpuProbe, NoGpu, PeakSampler, probe_from_environment, select_devices
from autoresearch.runners.hashing import changed_files, hash_files
from autoresearch.runners.home import run_home
from autoresearch.runners.lanes import Lane
from autoresearch.runners.process_sandbox import gpu_env, run_sandbox
from autoresearch.runners.pump import LogPump, StdoutTee, pipe_chunks

log = structlog.get_logger("autoresearch.runner.process")

OWNER_ENV = "AUTORESEARCH_RUN_OWNER"
"""Set in bwrap's environment (a bare run's own, without a sandbox) to the repo id, so a restarted
daemon can find a run it never journaled."""
INSTANCE_ENV = "AUTORESEARCH_RUN_INSTANCE"
LANE_ENV = "AUTORESEARCH_RUN_LANE"
"""Beside the owner mark: which daemon and which of its lanes started the run, so reaping one lane's
leftovers never kills another lane's live run."""
UNSAFE = ('process.sandbox = "none": runs execute unsandboxed with the daemon\'s rights (its files, .git, '
          "network, Docker socket); unsafe with an LLM or command agent")


@dataclass
class ProcessRunner:
    gpu: GpuProbe
    settings: ProcessSettings = field(default_factory=ProcessSettings)
    repo_id: str = ""
    bwrap: str | None = None
    """The bwrap binary; None runs unsandboxed (only when ``settings.sandbox`` is "none")."""
    host_env: Mapping[str, str] | None = None
    poll_s: float = 0.05
    name: str = "process"
    instance: str = ""
    lane: Lane | None = None
    """The lane this runner serves (its GPUs are ``settings.gpus``, its cores ``lane.cpus``); None = the only one."""
    taskset: str | None = None
    """The taskset binary that pins a lane's runs to its cores (None: no pinning)."""
    enforcer: Enforcer | None = None
    """Per-run cgroups or the rlimit fallback (``process.cgroups``); None: none (tests that need no limits)."""
    prlimit: str | None = None
    """The prlimit binary that sets RLIMIT_FSIZE (``write_cap``) on every run; None: not set."""

    @classmethod
    def from_config(
        cls, settings: Settings, repo_id: str = "", instance: str = "", lane: Lane | None = None,
        gpu_probe: GpuProbe | None = None,
    ) -> ProcessRunner:
        ps = _for_lane(settings.process, lane)
        bwrap = check_bwrap() if ps.sandbox == "bwrap" else None  # ConfigError (exit 2) naming the fix
        if bwrap is None and settings.setup:
            raise ConfigError(f"setup ({settings.source_of('setup')}) builds the repo's environment at "
                              '/workspace/.venv inside a sandbox: it needs process.sandbox = "bwrap" (or '
                              "runner = \"docker\"); unsandboxed runs cannot see it")
        if bwrap is None:
            log.warning("process.unsandboxed", warning=UNSAFE)
        taskset = _taskset(settings) if lane is not None and lane.cpus else None
        gpu = gpu_probe or (NoGpu() if ps.gpus == "none" else probe_from_environment())
        prlimit = process_limits.check_sizes(ps)
        enforcer = detect(ps.cgroups, prlimit)
        if enforcer.not_enforced:  # said at every start (and in status): explicitly off is only info
            level = log.info if ps.cgroups == "off" else log.warning
            level("process.limits_not_enforced", enforcer=enforcer.kind, not_enforced=list(enforcer.not_enforced),
                  reason=getattr(enforcer, "reason", ""))
        return cls(gpu=gpu, settings=ps, repo_id=repo_id, bwrap=bwrap, instance=instance, lane=lane, taskset=taskset,
                   enforcer=enforcer, prlimit=prlimit)

    @property
    def kill_timeout_s(self) -> float:
        return self.settings.kill_timeout_s

    def check(self) -> None:
        if self.bwrap is None and self.settings.sandbox == "bwrap":
            raise RunnerError("the process runner has no bwrap binary although process.sandbox is bwrap")

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        with run_home(spec) as home:
            root = _snapshot(spec)
            self._check_lane_gpus()
            group = self._open_group(spec)
            try:
                return self._run(spec, root, on_started, group, home)
            finally:
                group.close()  # kills whatever of the run is left (a bare run's escaped children too)

    def limits_notice(self) -> dict[str, Any]:
        """What the runs' limits are here and which are not enforced (``status`` shows it)."""
        enforcer = self.enforcer or Rlimits("no enforcer configured", self.prlimit)
        return limits_notice.notice(enforcer, self.settings)

    def _open_group(self, spec: RunSpec) -> RunGroup:
        if self.enforcer is None:
            return NoGroup()
        cpus = "" if self.lane is None else self.lane.cpu_list
        limits = Limits(memory=parse_size(self.settings.memory), pids=self.settings.pids_limit, cpus=cpus)
        tag = f"{self._group_tag()}-{spec.kind}-{spec.n}"
        try:
            return self.enforcer.open(tag, limits)
        except Unavailable as exc:  # e.g. the kernel's cgroup limit: this run gets what the fallback gives
            log.error("process.limits_not_enforced", n=spec.n, reason=str(exc))
            return Rlimits(str(exc), self.prlimit).open(tag, limits)

    def _group_tag(self) -> str:
        """This repo's and lane's run groups: a restart sweeps only its own leftovers."""
        owner = hashlib.sha256(self.repo_id.encode()).hexdigest()[:8]
        return f"{owner}-{0 if self.lane is None else self.lane.index}"

    def _run(
        self, spec: RunSpec, root: Path, on_started: OnStarted, group: RunGroup, home: Path | None,
    ) -> RunOutcome:
        watched = (spec.target, *spec.readonly)
        before = hash_files(root, watched)  # the snapshot is the commit: these are the committed hashes
        if spec.output_dir is not None:
            spec.output_dir.mkdir(parents=True, exist_ok=True)
        copy = (process_limits.OutputCopy(spec.output_dir, parse_size(self.settings.write_cap)).start()
                if self.bwrap is not None and spec.output_dir is not None and process_limits.capped_output(spec)
                else None)
        try:
            box = self._launch(spec, root, group, home, copy)
        finally:
            if copy is not None:
                copy.sent()
        started = time.monotonic()
        on_started({**box.handle(), "lane": None if self.lane is None else self.lane.index})
        gate = threading.Event()
        with CappedLog(spec.log_path, spec.log_cap_bytes) as sink, contextlib.ExitStack() as stack:
            pumps = self._pumps(box, spec, sink, gate, started, stack)
            sampler = None if isinstance(self.gpu, NoGpu) else PeakSampler(self.gpu, box.pids).start()
            stopped_for = self._wait(box, spec, started)
            latency = None
            if stopped_for:
                for pump in pumps:
                    pump.close()  # the deadline: nothing printed from now on counts
                latency = box.terminate(self.kill_timeout_s, self.poll_s)
            box.kill()  # stragglers of a bare group; a sandbox is already gone with its pid 1
            for pump in pumps:
                pump.join(timeout=5)  # drains what the run printed before it ended
                pump.close()
                pump.join(timeout=1)
            for stream in (box.proc.stdout, box.proc.stderr):
                if stream is not None:
                    stream.close()
            peak_mb = sampler.stop() if sampler is not None else None
        if peak_mb is None and (peak := group.peak_bytes()):
            peak_mb = peak / 2**20  # no GPU: the run's own memory, from its cgroup
        cause, detail = classify(stopped_for or exit_cause(box.proc.returncode),
                                 changed=changed_files(before, hash_files(root, watched)), oom=group.oom_kills() > 0)
        cause, detail = process_limits.output_cause(cause, detail, spec, copy, self.settings)
        if latency is not None:
            log.info("run.killed", n=spec.n, reason=stopped_for, kill_latency_s=round(latency, 3))
        return RunOutcome(
            cause=cause,
            exit_code=box.proc.returncode,
            wall_s=time.monotonic() - started,
            kill_latency_s=latency,
            peak_memory_gb=None if not peak_mb else peak_mb / 1024,
            gpu_count=self._gpu_count() if sampler is not None else 0,
            detail=detail,
            log_truncated=sink.truncated,
        )

    def _pumps(
        self, box: process_box.Box, spec: RunSpec, sink: CappedLog, gate: threading.Event, started: float,
        stack: contextlib.ExitStack,
    ) -> list[LogPump]:
        """One pump for the merged output, or (``spec.stdout_path``) one per stream: stdout also goes to its
        own file, up to the deadline, for a metric read from stdout alone."""
        out, err = box.proc.stdout, box.proc.stderr
        assert out is not None
        if err is None or spec.stdout_path is None:
            return [LogPump(pipe_chunks(out.fileno(), gate), sink, gate=gate).start()]
        copy = stack.enter_context(CappedLog(spec.stdout_path, spec.log_cap_bytes))
        tee = StdoutTee(sink, copy, started + spec.deadline_s)
        return [LogPump(pipe_chunks(out.fileno(), gate), tee, gate=gate).start(),
                LogPump(pipe_chunks(err.fileno(), gate), sink, gate=gate).start()]

    def _launch(
        self, spec: RunSpec, root: Path, group: RunGroup, home: Path | None,
        copy: process_limits.OutputCopy | None = None,
    ) -> process_box.Box:
        host = dict(os.environ if self.host_env is None else self.host_env)
        mark = self._marks()
        pin = () if self.taskset is None or self.lane is None else (self.taskset, "-c", self.lane.cpu_list)
        fsize = () if self.prlimit is None else (self.prlimit, f"--fsize={parse_size(self.settings.write_cap)}", "--")
        prefix = (*group.prefix(), *fsize, *pin)  # each execs the next: the run starts inside its cgroup
        stderr = subprocess.PIPE if spec.stdout_path is not None else subprocess.STDOUT  # stdout kept apart
        if self.bwrap is None:
            log.warning("process.unsandboxed", n=spec.n, warning=UNSAFE)
            env = {**_bare_env(spec, self.settings, host), **mark}
            return process_box.launch(spec.command, None, None, env, root, stderr=stderr, prefix=prefix)
        sandbox = process_limits.sized(run_sandbox(spec, root, self.settings, host, home), spec, self.settings)
        command = spec.command if copy is None else process_limits.wrapped(spec.command)
        stdin = subprocess.DEVNULL if copy is None else copy.write_fd
        return process_box.launch(command, sandbox, self.bwrap, {"PATH": "/usr/bin:/bin", **mark}, root,
                                  stderr=stderr, prefix=prefix, stdin=stdin)

    def _marks(self) -> dict[str, str]:
        if not self.repo_id:
            return {}
        lane = {} if self.lane is None else {LANE_ENV: str(self.lane.index)}
        return {OWNER_ENV: self.repo_id, INSTANCE_ENV: self.instance, **lane}

    def _check_lane_gpus(self) -> None:
        """A lane's GPUs must be there and free (a dead run may still hold one): GpuError stops this lane only."""
        if self.lane is not None and self.lane.gpus:
            select_devices(self.gpu, list(self.lane.gpus), self.settings.gpu_min_free_mb)

    def _gpu_count(self) -> int:
        return len(self.lane.gpus) if self.lane is not None and self.lane.gpus else len(self.gpu.devices())

    def _wait(self, box: process_box.Box, spec: RunSpec, started: float) -> str | None:
        """Wait for exit; return 'timeout' or 'interrupted' if the daemon has to stop it."""
        deadline = started + spec.deadline_s
        while box.proc.poll() is None:
            spec.heartbeat()
            if spec.cancel.is_set():
                return "interrupted"
            if time.monotonic() >= deadline:
                return "timeout"
            spec.cancel.wait(self.poll_s)
        return None

    def reattach(
        self, handle: dict[str, Any], spec: RunSpec, on_started: OnStarted | None = None,
    ) -> RunOutcome | None:
        return None  # a local run does not outlive its daemon's death usefully: reaped, recorded interrupted

    def reap(self, handle: dict[str, Any]) -> bool:
        return handle.get("kind") == "process" and process_box.reap(handle)

    def reap_orphans(self) -> int:
        """Kill every process that carries this repo's owner mark (a sandbox's bwrap, whose death ends the
        sandbox): runs of a daemon that died, including one killed before it journaled the handle."""
        if not self.repo_id:
            return 0
        mark = f"{OWNER_ENV}={self.repo_id}".encode()
        killed = procs.kill_where(lambda environ: mark in environ and self._orphan(environ))
        if self.enforcer is not None:
            self.enforcer.sweep(self._group_tag())  # a dead daemon's run groups
        return killed

    def _orphan(self, environ: list[bytes]) -> bool:
        """A marked run is left over unless it is another lane's run of this same daemon (that one is live)."""
        if self.lane is None:
            return True
        values = dict(entry.split(b"=", 1) for entry in environ if b"=" in entry)
        if values.get(INSTANCE_ENV.encode()) != self.instance.encode():
            return True
        return values.get(LANE_ENV.encode()) == str(self.lane.index).encode()


def _for_lane(settings: ProcessSettings, lane: Lane | None) -> ProcessSettings:
    """A lane's runs see only its GPUs, numbered as NVML numbers them (CUDA's default order may differ)."""
    if lane is None or not lane.gpus:
        return settings
    env = {**settings.env, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    return settings.model_copy(update={"gpus": list(lane.gpus), "env": env})


def _taskset(settings: Settings) -> str:
    found = shutil.which("taskset")
    if found is None:
        raise ConfigError(f"lanes ({settings.source_of('lanes')}): pinning a lane's runs to its CPU cores needs "
                          f"taskset (util-linux): install it, or set lanes = 1")
    return found


def _snapshot(spec: RunSpec) -> Path:
    if spec.snapshot is None or not spec.snapshot.is_dir():
        raise RunnerError(f"run {spec.n} has no snapshot of its commit: a run never starts from the working tree")
    return spec.snapshot


def _bare_env(spec: RunSpec, settings: ProcessSettings, host: Mapping[str, str]) -> dict[str, str]:
    """The unsandboxed environment: the allow-list plus the host's PATH (daemon's interpreter first) and
    HOME (the session's home when there is one: unsandboxed, nothing keeps a run from changing it)."""
    fixed = {
        "PATH": str(Path(sys.executable).parent) + os.pathsep + host.get("PATH", "/usr/bin:/bin"),
        "HOME": str(spec.home) if spec.home is not None else host.get("HOME", "/tmp"),
        "PYTHONUNBUFFERED": "1",
        **gpu_env(settings.gpus, host),
    }
    if spec.output_dir is not None:
        fixed["AUTORESEARCH_OUTPUT"] = str(spec.output_dir)
    if spec.eval_data is not None and spec.kind in ("evaluate", "prepare"):
        fixed["AUTORESEARCH_EVAL_DATA"] = str(spec.eval_data)
    return allowed_environment(spec.env, host, settings.env_allow, settings.env, fixed)

"""One Slurm job for one run: its folder under the shared folder, ``job.json`` (the sandbox's command
line, built here by the local runners' own code), the batch script and ``sbatch``'s arguments.

Pure functions of the settings and the run, apart from writing the job's files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import secrets
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoresearch.ops.config import Settings, SlurmSettings
from autoresearch.runners.base import RunSpec
from autoresearch.runners.bwrap import Bind
from autoresearch.runners.docker_spec import LABEL_PREFIX, parse_size
from autoresearch.runners.environment import allowed_environment
from autoresearch.runners.process_sandbox import gpu_env, run_sandbox
from autoresearch.runners.slurm_docker import docker_line

SCRIPT = "job.sh"
JOB = "job.json"
SLURM_OUT = "slurm.out"
HASHES = "hashes.json"


def job_dir(spec: RunSpec, attempt: int) -> Path:
    """The attempt's folder, beside the run's log (under the shared folder through the state's links)."""
    return spec.log_path.parent.resolve() / "slurm" / f"{spec.kind}-a{attempt}"


def job_name(prefix: str, spec: RunSpec, attempt: int) -> str:
    """Unique per submission (a random token): a lookup by the journaled name never finds another session's
    job of the same number."""
    return f"{prefix}{spec.n}-{spec.kind}-a{attempt}-{secrets.token_hex(3)}"


def wants_gpus(settings: Settings) -> bool:
    return bool(settings.slurm.gres) and "gpu" in (settings.slurm.gres or "")


def sbatch_args(settings: Settings, spec: RunSpec, name: str, folder: Path) -> list[str]:
    """Resources per lane, the job's name (how the runner finds it again) and Slurm's own time limit, a
    backstop only: whole minutes, past budget + grace."""
    s = settings.slurm
    minutes = math.ceil(spec.deadline_s / 60) + s.time_margin_min
    args = [f"--job-name={name}", f"--output={folder / SLURM_OUT}", f"--chdir={folder}", f"--time={minutes}",
            "--no-requeue", "--nodes=1", "--ntasks=1"]
    return [*args, *resource_args(s)]


def resource_args(slurm: SlurmSettings) -> list[str]:
    """What one lane's job asks of the cluster, in ``sbatch`` syntax (also what ``init`` test-submits)."""
    pairs = (("--partition", slurm.partition), ("--account", slurm.account), ("--qos", slurm.qos),
             ("--gres", slurm.gres), ("--cpus-per-task", slurm.cpus_per_task), ("--mem", slurm.mem))
    return [f"{flag}={value}" for flag, value in pairs if value is not None] + list(slurm.extra_args)


def write_job(settings: Settings, spec: RunSpec, folder: Path, home: Path | None, marks: Mapping[str, str],
              name: str) -> Path:
    """Write the attempt's ``job.json`` and batch script (``name``: the job's, also its container's);
    returns the script."""
    folder.mkdir(parents=True, exist_ok=True)
    if spec.output_dir is not None:
        spec.output_dir.mkdir(parents=True, exist_ok=True)  # bound into the sandbox: it must exist
    for stale in folder.iterdir():
        if stale.is_file():
            stale.unlink()  # a retried submission of this attempt starts clean
    job = {**command_line(settings, spec, home, marks, name), "log": str(spec.log_path.resolve()),
           "stdout": None if spec.stdout_path is None else str(spec.stdout_path.resolve()),
           "log_cap": spec.log_cap_bytes, "deadline_s": spec.deadline_s, "gpus": wants_gpus(settings)}
    (folder / JOB).write_text(json.dumps(job))
    script = folder / SCRIPT
    # exec: the job's one process is the helper, which waits for the sandbox and records its status.
    script.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m autoresearch.runners.slurm_job "
                      f"{shlex.quote(str(folder / JOB))}\n")
    script.chmod(0o755)
    return script


def command_line(settings: Settings, spec: RunSpec, home: Path | None, marks: Mapping[str, str],
                 name: str) -> dict[str, Any]:
    """``argv``, ``env`` and ``cwd`` of what the job starts, by ``slurm.inner`` (``marks``: the container's
    labels)."""
    inner = settings.slurm.inner
    root = _resolved(spec.snapshot)
    assert root is not None, "a Slurm run always has its snapshot"
    if inner == "docker":
        values = {"repo": marks.get("AUTORESEARCH_RUN_OWNER", ""), "lane": marks.get("AUTORESEARCH_RUN_LANE", ""),
                  "instance": marks.get("AUTORESEARCH_RUN_INSTANCE", ""), "experiment": str(spec.n), "kind": spec.kind}
        return docker_line(settings, spec, root, home, name, {LABEL_PREFIX + k: v for k, v in values.items()})
    if inner == "none":
        env = _bare_env(settings, spec, home)
        return {"inner": inner, "argv": ["/bin/sh", "-c", spec.command], "env": env, "cwd": str(root)}
    ps = settings.process.model_copy(update={"gpus": "none"})  # the node's GPUs are added there (slurm_job)
    resolved = dataclasses.replace(spec, snapshot=root, output_dir=_resolved(spec.output_dir),
                                   cache_dir=_resolved(spec.cache_dir), eval_data=_resolved(spec.eval_data),
                                   home=_resolved(spec.home), env_dir=_resolved(spec.env_dir))
    sandbox = run_sandbox(resolved, root, ps, os.environ, _resolved(home))
    sizes = {"/tmp": parse_size(ps.tmpfs_size), "/dev/shm": parse_size(ps.shm_size)}
    binds = sandbox.binds + ((Bind(Path("/sys"), "/sys", optional=True),) if wants_gpus(settings) else ())
    sandbox = dataclasses.replace(sandbox, binds=binds, tmpfs_sizes=sizes)
    fsize = ["prlimit", f"--fsize={parse_size(ps.write_cap)}", "--"]  # no file may outgrow the write cap
    argv = [*fsize, *sandbox.argv(["/bin/sh", "-c", spec.command], bwrap="bwrap")]
    # No process-runner owner mark: where the daemon's host is also a node, its local reaping would take
    # a job's sandbox for a leftover of its own (a job is found by its name in Slurm instead).
    return {"inner": inner, "argv": argv, "env": {"PATH": "/usr/bin:/bin"}, "cwd": "/"}


def _resolved(path: Path | None) -> Path | None:
    """The real path (through the state folder's links): what a node sees of the shared folder."""
    return None if path is None else path.resolve()


def _bare_env(settings: Settings, spec: RunSpec, home: Path | None) -> dict[str, str]:
    """An unsandboxed job's environment: the allow-list, the daemon's interpreter first on PATH."""
    fixed = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
             "HOME": str(home or spec.home or "/tmp"), "PYTHONUNBUFFERED": "1",
             **gpu_env("none" if not wants_gpus(settings) else "all", {})}
    if spec.output_dir is not None:
        fixed["AUTORESEARCH_OUTPUT"] = str(spec.output_dir.resolve())
    if spec.eval_data is not None and spec.kind == "evaluate":
        fixed["AUTORESEARCH_EVAL_DATA"] = str(spec.eval_data.resolve())
    ps = settings.process
    return allowed_environment(spec.env, os.environ, ps.env_allow, ps.env, fixed)

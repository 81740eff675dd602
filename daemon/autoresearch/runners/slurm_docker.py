"""``slurm.inner = "docker"``: the ``docker run`` line a job starts, from the Docker runner's own pieces
(``docker_spec``: its environment, mounts, hardening and labels), as CLI flags.

A container lives under dockerd, outside the job's cgroup, so Slurm's signals do not reach it: the job's
helper (``slurm_job``) ``docker kill``s it by name when the job is cancelled, and ``--rm`` removes it.
Its memory is ``docker.memory`` (the container is outside ``--mem``'s reach). Its /output is the run's
folder under the shared folder, bound (not the local runner's capped tmpfs volume); every file is
capped at ``docker.write_cap`` and the folder is measured after the run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from docker.types import Mount

from autoresearch.ops.config import Settings
from autoresearch.runners import docker_spec
from autoresearch.runners.base import RunSpec
from autoresearch.runners.docker_files import RunFiles, let_container_write
from autoresearch.runners.docker_spec import parse_size

IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH of the usual images, after the repo's environment (the local runner reads the image's own)."""


def docker_line(settings: Settings, spec: RunSpec, root: Path, home: Path | None, name: str,
                labels: dict[str, str]) -> dict[str, Any]:
    """``argv``, ``env`` and ``cwd`` of the job's ``docker run``; ``container`` is its name."""
    ds = settings.docker
    output = spec.output_dir.resolve() if spec.output_dir is not None else None
    writes = spec.kind == "train"
    target = root / spec.target if spec.kind == "train" and (root / spec.target).is_file() else None
    root.chmod(0o755)  # the container's uid is not ours
    files = RunFiles(workspace=root, private=root, output=output or root / ".no-output", target=target,
                     writes_output=False,
                     home=home.resolve() if home is not None else None)
    cache = spec.cache_dir.resolve() if spec.cache_dir is not None else None
    mounts = docker_spec.mounts(spec, files, str(cache) if cache else None, ds)
    if output is not None and writes:
        let_container_write(output, ds.user)
        mounts = [m for m in mounts if m["Target"] != docker_spec.OUTPUT]
        mounts.append(Mount(docker_spec.OUTPUT, str(output), type="bind", read_only=False))
    if target is not None:
        let_container_write(target, ds.user)
    env = docker_spec.environment(spec.env, os.environ, ds, cache=cache is not None,
                                  eval_data=spec.kind == "evaluate" and spec.eval_data is not None)
    env.update(docker_spec.session_environment(spec, ds, IMAGE_PATH))
    memory, cap = parse_size(ds.memory), parse_size(ds.write_cap)
    argv = ["docker", "run", "--rm", "--init", "--name", name, "--user", ds.user, "--workdir", docker_spec.WORKSPACE,
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pids-limit",
            str(ds.pids_limit), "--memory", str(memory), "--memory-swap", str(memory), "--shm-size",
            str(parse_size(ds.shm_size)), "--ulimit", f"fsize={cap}:{cap}", "--ipc", "private", "--network",
            ds.network, "--tmpfs", f"/tmp:{docker_spec.tmpfs_options(ds)}", "--hostname", "autoresearch"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    for mount in mounts:
        argv += ["--mount", _mount_flag(mount)]
    for key, value in sorted(env.items()):
        argv += ["--env", f"{key}={value}"]
    argv += [ds.image, *docker_spec.command(spec.command)]
    return {"inner": "docker", "argv": argv, "env": {"PATH": "/usr/local/bin:/usr/bin:/bin"}, "cwd": "/",
            "container": name}


def _mount_flag(mount: Mount) -> str:
    flag = f"type={mount['Type']},source={mount['Source']},target={mount['Target']}"
    return flag + (",readonly" if mount.get("ReadOnly") else "")

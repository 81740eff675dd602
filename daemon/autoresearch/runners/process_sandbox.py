"""What a process run's bubblewrap sandbox looks like: pure functions of the settings and the run.

The run's snapshot (the commit's files) read-only at /workspace with the target bound read-write
over it, the output folder at /output, the cache at /cache (writable for prepare only), evaluation
data at /eval (evaluate only), a private /tmp and /dev/shm, the daemon's interpreter and the system
read-only; no network, no .git, no host /proc, no Docker socket, no credentials.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from autoresearch.runners import home as session_home
from autoresearch.runners.base import EVAL_MOUNT, OUTPUT_MOUNT
from autoresearch.runners.bwrap import SYSTEM_DIRS, Bind, Sandbox
from autoresearch.runners.environment import allowed_environment

if TYPE_CHECKING:
    from autoresearch.ops.config import ProcessSettings
    from autoresearch.runners.base import RunSpec

WORKSPACE = "/workspace"
CACHE = "/cache"
NVIDIA_NODES = ("nvidia*", "nvidia-caps/*", "dri/*")
"""Patterns under /dev bound in (as they are) when GPUs are configured."""


def under_system(path: Path) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in SYSTEM_DIRS)


def interpreter_binds() -> list[Bind]:
    """The daemon's Python (its venv and the base install) read-only, where the system dirs do not hold it."""
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, Path(sys.executable).resolve().parent.parent)}
    return [Bind(root, str(root)) for root in sorted(roots) if not under_system(root)]


def parse_mounts(entries: list[str]) -> list[Bind]:
    """``host[:inside]`` entries (``~`` expanded) as optional read-only binds."""
    binds = []
    for entry in entries:
        host, _, inside = entry.partition(":")
        source = Path(host).expanduser()
        binds.append(Bind(source, inside or str(source), optional=True))
    return binds


def gpu_devices(gpus: str | list[str]) -> tuple[str, ...]:
    if gpus == "none":
        return ()
    return tuple(sorted(node for pattern in NVIDIA_NODES for node in map(str, Path("/dev").glob(pattern))))


def gpu_env(gpus: str | list[str], host_env: Mapping[str, str]) -> dict[str, str]:
    """CUDA_VISIBLE_DEVICES from the GPU choice: empty for none, the list for a list, else the host's (if any)."""
    if gpus == "none":
        return {"CUDA_VISIBLE_DEVICES": ""}
    if isinstance(gpus, list):
        return {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}
    return {}


def run_environment(
    spec: RunSpec, settings: ProcessSettings, host_env: Mapping[str, str], uv: Path | None = None,
) -> dict[str, str]:
    fixed = {
        "PATH": session_home.search_path(spec, f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                                         session_home.UV_DIR if uv is not None else None),
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **gpu_env(settings.gpus, host_env),
        **session_home.session_environment(spec),
    }
    if "PATH" in settings.env:
        del fixed["PATH"]  # the user's PATH (process.env) replaces the default
    if spec.output_dir is not None:
        fixed["AUTORESEARCH_OUTPUT"] = OUTPUT_MOUNT
    if spec.cache_dir is not None:
        fixed["AUTORESEARCH_CACHE"] = CACHE
    if spec.eval_data is not None and spec.kind in ("evaluate", "prepare"):
        fixed["AUTORESEARCH_EVAL_DATA"] = EVAL_MOUNT
    env = allowed_environment(spec.env, host_env, settings.env_allow, settings.env, fixed)
    for key in ("AUTORESEARCH_CACHE", "AUTORESEARCH_OUTPUT", "AUTORESEARCH_EVAL_DATA"):
        if key not in fixed:
            env.pop(key, None)  # a host path that the sandbox does not have
    return env


def session_binds(spec: RunSpec, root: Path, home: Path | None, uv: Path | None) -> list[Bind]:
    """The repo's environment at /workspace/.venv (writable for setup), HOME (the persistent home for setup
    and prepare; else the run's layer over the home read-only), and the host's uv."""
    binds = []
    if spec.env_dir is not None:
        spec.env_dir.mkdir(parents=True, exist_ok=True)
        session_home.mount_point(root)
        binds.append(Bind(spec.env_dir, session_home.ENV, writable=spec.kind == "setup"))
    if home is not None and spec.home is not None:
        binds.append(Bind(home, session_home.HOME, writable=True))
        if home != spec.home:
            binds.append(Bind(spec.home, session_home.HOME_BASE))
    if uv is not None:
        binds.append(Bind(uv, f"{session_home.UV_DIR}/uv"))
    return binds


def run_sandbox(
    spec: RunSpec, root: Path, settings: ProcessSettings, host_env: Mapping[str, str], home: Path | None = None,
) -> Sandbox:
    """The sandbox of one run from ``root`` (the run's snapshot); ``home``: the host folder at HOME
    (``runners.home.run_home``)."""
    uv = session_home.find_uv()
    binds = [Bind(root, WORKSPACE)]
    target = root / spec.target
    if target.is_file():
        binds.append(Bind(target, str(PurePosixPath(WORKSPACE) / spec.target), writable=True))
    if spec.output_dir is not None:
        binds.append(Bind(spec.output_dir, OUTPUT_MOUNT, writable=spec.kind in ("train", "prepare")))
    if spec.cache_dir is not None:
        binds.append(Bind(spec.cache_dir, CACHE, writable=spec.kind == "prepare"))
    if spec.eval_data is not None and spec.kind in ("evaluate", "prepare"):
        spec.eval_data.mkdir(parents=True, exist_ok=True)
        binds.append(Bind(spec.eval_data, EVAL_MOUNT, writable=spec.kind == "prepare"))  # prepare writes it
    devices = gpu_devices(settings.gpus)
    if devices:
        binds.append(Bind(Path("/sys"), "/sys", optional=True))  # the CUDA driver and NVML read the PCI tree
    binds += interpreter_binds() + parse_mounts(settings.mounts) + session_binds(spec, root, home, uv)
    return Sandbox(
        binds=tuple(binds),
        env=run_environment(spec, settings, host_env, uv),
        cwd=WORKSPACE,
        share_net=session_home.writes_home(spec.kind),  # setup and prepare download (user-written commands)
        devices=devices,
        tmpfs=("/tmp", "/dev/shm"),
    )


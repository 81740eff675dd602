"""What a run's container looks like: hardening, mounts, environment, GPUs, labels.

Pure functions of the settings and the run, so the sandbox is easy to read and test without an engine.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

from autoresearch.errors import ConfigError
from autoresearch.runners import home as session_home
from autoresearch.runners.environment import allowed_environment

if TYPE_CHECKING:
    from autoresearch.ops.config import DockerSettings
    from autoresearch.runners.base import RunSpec
    from autoresearch.runners.docker_files import RunFiles
    from autoresearch.runners.gpu import GpuDevice

WORKSPACE = "/workspace"
CACHE = "/cache"
OUTPUT = "/output"
EVAL = "/eval"
LABEL_PREFIX = "autoresearch."
# A command with none of these runs without a shell, so SIGTERM reaches the script itself (not just sh).
_SHELL_SYNTAX = re.compile(r"[;&|<>()$`*?~\\\n\[\]{}]")
_SHELL_BUILTIN = re.compile(r"^(\.|alias|cd|eval|exec|exit|export|read|set|shift|source|trap|ulimit|umask|unset|wait)$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes in a Docker-style size: 512m, 8g, 1.5G, 1024."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(text)
    if not m:
        raise ConfigError(f"not a size: {text!r} (expected e.g. 512m or 8g)")
    return int(float(m.group(1)) * 1024 ** "_kmgt".index((m.group(2) or "_").lower()))


def command(text: str) -> list[str]:
    """argv for the container: the command itself when it is a plain word list, else ``sh -c``."""
    if not _SHELL_SYNTAX.search(text):
        with contextlib.suppress(ValueError):
            argv = shlex.split(text)
            if argv and "=" not in argv[0] and not _SHELL_BUILTIN.match(argv[0]):
                return argv
    return ["/bin/sh", "-c", text]


def labels(repo_id: str, instance: str, spec: RunSpec, lane: int | None = None) -> dict[str, str]:
    return {
        f"{LABEL_PREFIX}repo": repo_id,
        f"{LABEL_PREFIX}experiment": str(spec.n),
        f"{LABEL_PREFIX}instance": instance,
        f"{LABEL_PREFIX}lane": "" if lane is None else str(lane),
        f"{LABEL_PREFIX}kind": spec.kind,
        f"{LABEL_PREFIX}commit": spec.commit or "",
    }


def is_orphan(container_labels: Mapping[str, str], instance: str, lane: int | None) -> bool:
    """Whether a container of this repo is left over, seen from the runner of ``lane`` in ``instance``.

    Another lane's container of this same daemon is live: never an orphan. A single-lane runner (lane
    None) owns every run of its daemon."""
    if lane is None or container_labels.get(f"{LABEL_PREFIX}instance") != instance:
        return True
    return container_labels.get(f"{LABEL_PREFIX}lane") == str(lane)


def container_name(repo_id: str, n: int, token: str) -> str:
    safe = re.sub(r"[^a-zA-Z0-9_.-]+", "-", repo_id).strip("-.")[:40] or "repo"
    return f"autoresearch-{safe}-{n}-{token}"


def environment(
    spec_env: Mapping[str, str], host_env: Mapping[str, str], settings: DockerSettings, cache: bool,
    eval_data: bool = False,
) -> dict[str, str]:
    """The allow-listed environment: AUTORESEARCH_* from the spec, env_allow from the host, the config's env."""
    fixed = {
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "AUTORESEARCH_OUTPUT": OUTPUT,
        # docker-init (tini) then signals the whole process group, so `sh -c` children get SIGTERM too.
        "TINI_KILL_PROCESS_GROUP": "1",
    }
    if cache:
        fixed["AUTORESEARCH_CACHE"] = CACHE
    env = allowed_environment(spec_env, host_env, settings.env_allow, settings.env, fixed)
    if not cache:
        env.pop("AUTORESEARCH_CACHE", None)
    if eval_data:
        env["AUTORESEARCH_EVAL_DATA"] = EVAL
    else:
        env.pop("AUTORESEARCH_EVAL_DATA", None)
    return env


def mounts(spec: RunSpec, files: RunFiles, cache_dir: str | None, settings: DockerSettings) -> list[Mount]:
    """The snapshot read-only, the target read-write (not for evaluate), /output, /eval, the cache, extras.

    /output is the engine volume of a writing run (train, prepare), else the training run's output
    folder read-only; /eval (read-only for evaluate, writable for prepare) and the cache (writable for
    prepare only) are binds.
    """
    out = [Mount(WORKSPACE, str(files.workspace), type="bind", read_only=True)]
    if files.target is not None:
        target = str(PurePosixPath(WORKSPACE) / PurePosixPath(spec.target))
        out.append(Mount(target, str(files.target), type="bind", read_only=False))
    if files.volume is not None:
        out.append(output_mount(files.volume))
    elif not files.writes_output and files.output.is_dir():
        out.append(Mount(OUTPUT, str(files.output), type="bind", read_only=True))
    if spec.kind in ("evaluate", "prepare") and spec.eval_data is not None:
        spec.eval_data.mkdir(parents=True, exist_ok=True)  # prepare writes the held-out split there
        out.append(Mount(EVAL, str(spec.eval_data.resolve()), type="bind", read_only=spec.kind == "evaluate"))
    if cache_dir is not None:
        out.append(Mount(CACHE, cache_dir, type="bind", read_only=spec.kind != "prepare"))
    for entry in settings.mounts:
        host, _, rest = entry.partition(":")
        inside = rest.split(":")[0] or host
        out.append(Mount(inside, host, type="bind", read_only=True))
    return out + session_mounts(spec, files)


def session_mounts(spec: RunSpec, files: RunFiles) -> list[Mount]:
    """The repo's environment at /workspace/.venv (writable for setup), HOME (the session's home, or the run's
    layer with the home read-only beside it), and the host's CA bundle for the runs that use the network."""
    out = []
    if spec.env_dir is not None:
        out.append(Mount(session_home.ENV, str(spec.env_dir.resolve()), type="bind", read_only=spec.kind != "setup"))
    if files.home is not None and spec.home is not None:
        out.append(Mount(session_home.HOME, str(files.home.resolve()), type="bind", read_only=False))
        if files.home != spec.home:
            out.append(Mount(session_home.HOME_BASE, str(spec.home.resolve()), type="bind", read_only=True))
    certs = PurePosixPath(session_home.CA_BUNDLE).parent
    if session_home.writes_home(spec.kind) and Path(certs).is_dir():
        out.append(Mount(str(certs), str(certs), type="bind", read_only=True))  # the index behind a proxy's CA
    return out


def session_environment(spec: RunSpec, settings: DockerSettings, image_path: str) -> dict[str, str]:
    """HOME, uv's and the hub's variables (``runners.home``), and PATH with the repo's environment first
    (``image_path``: the image's own PATH) unless ``docker.env`` sets PATH."""
    env = session_home.session_environment(spec)
    if spec.env_dir is not None and "PATH" not in settings.env:
        env["PATH"] = session_home.search_path(spec, image_path)
    return env


def output_mount(volume: str) -> Mount:
    # no_copy: the image's /output (root-owned) must not be copied up, nor its owner given to the volume.
    return Mount(OUTPUT, volume, type="volume", no_copy=True)


def tmpfs_options(settings: DockerSettings) -> str:
    """/tmp: size-limited, exec allowed (compilers dlopen from it), owned by the run's uid.

    Docker copies the image's /tmp mode onto the tmpfs (a busybox image's 0755 would make it
    unwritable), so ownership is set explicitly when the user is numeric.
    """
    opts = f"rw,exec,nosuid,nodev,size={parse_size(settings.tmpfs_size)},mode=1777"
    uid, _, gid = settings.user.partition(":")
    if uid.isdigit():
        opts += f",uid={uid},gid={gid if gid.isdigit() else uid}"
    return opts


def gpu_options(settings: DockerSettings, chosen: list[GpuDevice]) -> dict[str, Any]:
    """device_requests for the NVIDIA runtime, or the configured device nodes (explicit mode)."""
    opts: dict[str, Any] = {}
    if settings.devices:
        opts["devices"] = [d if d.count(":") else f"{d}:{d}:rwm" for d in settings.devices]
    if settings.gpus == "none":
        return opts
    ids = [d.uuid for d in chosen] if isinstance(settings.gpus, list) else None
    if settings.gpu_mode == "runtime":
        request = DeviceRequest(count=-1, capabilities=[["gpu"]]) if ids is None else None
        opts["device_requests"] = [request or DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    elif ids is not None:
        opts["environment_extra"] = {"CUDA_VISIBLE_DEVICES": ",".join(ids)}
    return opts


def create_options(
    *,
    settings: DockerSettings,
    spec: RunSpec,
    files: RunFiles,
    cache_dir: str | None,
    env: dict[str, str],
    chosen: list[GpuDevice],
    labels: dict[str, str],
    name: str,
    cpuset: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Keyword arguments of ``containers.create``: the hardened sandbox for one run."""
    memory = parse_size(settings.memory)
    write_cap = parse_size(settings.write_cap)
    gpu = gpu_options(settings, chosen)
    env = {**env, **gpu.pop("environment_extra", {})}
    if "device_requests" in gpu:
        env.pop("CUDA_VISIBLE_DEVICES", None)  # host numbering; the runtime renumbers the GPUs it passes from 0
    opts: dict[str, Any] = {
        "image": settings.image,
        "command": command(spec.command),
        "name": name,
        "labels": labels,
        "user": settings.user,
        "working_dir": WORKSPACE,
        "environment": env,
        "mounts": mounts(spec, files, cache_dir, settings),
        "tmpfs": {"/tmp": tmpfs_options(settings)},
        "network_mode": settings.setup_network if session_home.writes_home(spec.kind) else settings.network,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": settings.pids_limit,
        "mem_limit": memory,
        "memswap_limit": memory,  # equal to the memory limit: no swap
        "shm_size": parse_size(settings.shm_size),
        # No single file may outgrow the write cap (the daemon polls the total once a second).
        "ulimits": [Ulimit(name="fsize", soft=write_cap, hard=write_cap)],
        "ipc_mode": "private",
        "oom_score_adj": 500,  # if the host itself runs short, the experiment dies first
        "init": True,  # docker-init as PID 1: forwards SIGTERM and reaps zombies
        "log_config": LogConfig(type="none"),  # the daemon streams the output itself; nothing piles up on disk
        "hostname": "autoresearch",
        "stdin_open": False,
        "tty": False,
        **gpu,
    }
    if settings.cpus is not None:
        opts["nano_cpus"] = int(settings.cpus * 1e9)
    if cpuset:
        opts["cpuset_cpus"] = ",".join(str(c) for c in cpuset)  # the lane's cores (cgroup-enforced)
    return opts

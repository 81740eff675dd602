"""The sandboxed runner: one fresh, hardened, labelled container per run, removed afterwards.

The container's shape (mounts, limits, GPUs) is in ``docker_spec``; its files in ``docker_files``;
its /output volume in ``docker_output``; watching it in ``docker_watch``. This module drives the
engine and classifies how a run ended: ok, exit:<code>, timeout, oom, violation, docker (engine
error), interrupted. Docker SDK errors are translated here and nowhere else. Nothing talks to the
engine before the first call that needs it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import docker.errors
import structlog
from docker.client import DockerClient, from_env

from autoresearch.errors import EngineUnavailable, ImageMissing, RunnerError
from autoresearch.runners import docker_output, docker_spec
from autoresearch.runners.base import CappedLog, OnStarted, RunOutcome, RunSpec
from autoresearch.runners.docker_files import RunFiles, cache_dir_of, let_container_write
from autoresearch.runners.docker_wait import Ending, wait_for_end
from autoresearch.runners.docker_watch import CgroupWatch, await_gpu_release, top_pids
from autoresearch.runners.ending import classify
from autoresearch.runners.gpu import GpuDevice, GpuProbe, NvmlProbe, PeakSampler, select_devices
from autoresearch.runners.home import mount_point, run_home
from autoresearch.runners.pump import LogPump, UntilDeadline, demux_chunks

if TYPE_CHECKING:
    from autoresearch.ops.config import DockerSettings, Settings
    from autoresearch.runners.lanes import Lane

log = structlog.get_logger("autoresearch.runners.docker")
T = TypeVar("T")
_ENGINE_ERRORS = (docker.errors.DockerException, OSError)  # requests' errors are OSErrors


@dataclass
class _Live:
    """A started container and what watches it."""

    cgroup: CgroupWatch
    gpu: PeakSampler | None
    gpu_peak_mb: float | None = None


class DockerRunner:
    name = "docker"

    def __init__(
        self,
        settings: DockerSettings,
        *,
        repo_id: str,
        instance: str,
        gpu_probe: GpuProbe | None = None,
        host_env: Mapping[str, str] | None = None,
        lane: Lane | None = None,
    ) -> None:
        self.settings = settings
        self.repo_id = repo_id
        self.instance = instance
        self.lane = lane
        """The lane this runner serves (its cores; its GPUs are ``settings.gpus``); None = the only one."""
        self._probe = gpu_probe
        self._host_env = host_env
        self._client: Any = None
        self._pending: set[str] = set()  # containers to remove once the engine answers again
        self._pending_volumes: set[str] = set()
        self._path: str | None = None  # the image's PATH, read once

    @classmethod
    def from_config(
        cls, settings: Settings, *, repo_id: str, instance: str, lane: Lane | None = None,
        gpu_probe: GpuProbe | None = None,
    ) -> DockerRunner:
        """The runner of ``lane``: runs get only its GPUs (in place of ``docker.gpus``) and its cores."""
        docker = settings.docker
        if lane is not None and lane.gpus:
            docker = docker.model_copy(update={"gpus": list(lane.gpus)})
        return cls(docker, repo_id=repo_id, instance=instance, lane=lane, gpu_probe=gpu_probe)

    # -- the engine ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self.settings.host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def _down(self, exc: BaseException) -> EngineUnavailable:
        return EngineUnavailable(
            f"Docker engine unreachable at {self.address}: is dockerd running? (systemctl start docker) [{exc}]"
        )

    def _engine(self) -> Any:
        if self._client is None:
            timeout = int(self.settings.api_timeout_s)
            try:
                if self.settings.host:
                    self._client = DockerClient(base_url=self.settings.host, timeout=timeout)
                else:
                    self._client = from_env(timeout=timeout)
            except _ENGINE_ERRORS as exc:  # from_env asks the engine for its API version
                raise self._down(exc) from exc
        return self._client

    def _api(self, what: str, call: Callable[[], T]) -> T:
        """One engine call, its errors translated: image missing, engine down, or a refused request."""
        try:
            return call()
        except docker.errors.ImageNotFound as exc:
            image = self.settings.image
            raise ImageMissing(
                f"runner image {image!r} not found: build it with runner-image/build-local.sh "
                f"(no registry needed) or `docker build -t {image} runner-image/`"
            ) from exc
        except docker.errors.APIError as exc:
            raise RunnerError(f"Docker refused to {what}: {exc.explanation or exc}") from exc
        except _ENGINE_ERRORS as exc:
            raise self._down(exc) from exc

    # -- the Runner protocol --------------------------------------------------------------------

    def check(self) -> None:
        client = self._engine()
        self._api("answer a ping", client.ping)
        self._api("find the image", lambda: client.images.get(self.settings.image))
        self._select_gpus()
        self._reap_pending()

    def reattach(
        self, handle: dict[str, Any], spec: RunSpec, on_started: OnStarted | None = None,
    ) -> RunOutcome | None:
        return None  # a local run does not outlive its daemon's death usefully: reaped, recorded interrupted

    def reap(self, handle: dict[str, Any]) -> bool:
        if handle.get("kind") != "docker" or not handle.get("container_id"):
            return False
        removed = self._reap_container(handle["container_id"])
        if handle.get("keeper_id"):
            self._reap_container(handle["keeper_id"])
        if handle.get("volume"):
            self._remove_volume(handle["volume"], why="reap")
        if handle.get("workspace"):
            shutil.rmtree(handle["workspace"], ignore_errors=True)
        return removed

    def reap_orphans(self) -> int:
        """Remove this repo's leftover containers, keepers and volumes; returns how many runs were left."""
        api = self._engine().api
        label = f"{docker_spec.LABEL_PREFIX}repo={self.repo_id}"
        found = self._api("list containers", lambda: api.containers(all=True, filters={"label": label}))
        found = [c for c in found if self._orphan(c.get("Labels"))]
        runs = sum(self._remove(c["Id"], why="orphan") and docker_output.ROLE_LABEL not in c["Labels"] for c in found)
        volumes = self._api("list volumes", lambda: api.volumes(filters={"label": label}))
        for volume in (volumes or {}).get("Volumes") or []:
            if self._orphan(volume.get("Labels")):
                self._remove_volume(volume["Name"], why="orphan")
        return runs

    def _orphan(self, labels: Mapping[str, str] | None) -> bool:
        """Left over, as seen from this runner: never another lane's live run of this same daemon."""
        return docker_spec.is_orphan(labels or {}, self.instance, None if self.lane is None else self.lane.index)

    def _labels(self, spec: RunSpec) -> dict[str, str]:
        return docker_spec.labels(self.repo_id, self.instance, spec, None if self.lane is None else self.lane.index)

    def run(self, spec: RunSpec, on_started: OnStarted) -> RunOutcome:
        with run_home(spec) as home:
            return self._run(spec, on_started, home)

    def _run(self, spec: RunSpec, on_started: OnStarted, home: Path | None) -> RunOutcome:
        client = self._engine()
        self._reap_pending()
        chosen = self._select_gpus()
        cache = cache_dir_of(spec)
        if cache is not None and spec.kind == "prepare":
            let_container_write(cache, self.settings.user)
        if spec.eval_data is not None and spec.kind == "prepare":  # prepare writes the held-out split too
            spec.eval_data.mkdir(parents=True, exist_ok=True)
            let_container_write(spec.eval_data, self.settings.user)
        self._session_files(spec, home)
        files = RunFiles.create(spec)
        files.home = home
        name = docker_spec.container_name(self.repo_id, spec.n, secrets.token_hex(3))
        container_id: str | None = None
        try:
            if files.writes_output:
                self._hold_output(client, spec, files, name)
            container = self._create(client, spec, files, cache, chosen, name)
            container_id = container.id
            outcome = self._run_container(container, spec, files, chosen, on_started)
            if files.writes_output:
                self._collect_output(files, outcome)
        finally:
            if container_id is not None:
                self._remove(container_id, why="done")
            self._release_output(files)
            files.cleanup()
        log.info(
            "docker.run_end",
            n=spec.n,
            kind=spec.kind,
            cause=outcome.cause,
            wall_s=round(outcome.wall_s, 2),
            peak_memory_gb=outcome.peak_memory_gb,
            kill_latency_s=outcome.kill_latency_s,
        )
        return outcome

    def _session_files(self, spec: RunSpec, home: Path | None) -> None:
        """What the container's uid writes: HOME (the session's home or the run's layer) and, for setup, the
        environment; the environment's mount point in the snapshot."""
        if home is not None:
            let_container_write(home, self.settings.user)
        if spec.env_dir is not None:
            spec.env_dir.mkdir(parents=True, exist_ok=True)
            if spec.kind == "setup":
                let_container_write(spec.env_dir, self.settings.user)
            if spec.snapshot is not None:
                mount_point(spec.snapshot)

    def _image_path(self, client: Any) -> str:
        """The image's own PATH (its Python, e.g. /opt/conda/bin), behind the repo's environment."""
        if self._path is None:
            attrs = self._api("inspect the image", lambda: client.images.get(self.settings.image).attrs)
            env = dict(e.split("=", 1) for e in (attrs.get("Config") or {}).get("Env") or [] if "=" in e)
            self._path = env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        return self._path

    # -- one run --------------------------------------------------------------------------------

    def _create(
        self, client: Any, spec: RunSpec, files: RunFiles, cache: Path | None, chosen: list[GpuDevice], name: str
    ) -> Any:
        host_env = os.environ if self._host_env is None else self._host_env
        eval_data = spec.kind in ("evaluate", "prepare") and spec.eval_data is not None
        opts = docker_spec.create_options(
            settings=self.settings,
            spec=spec,
            files=files,
            cache_dir=str(cache) if cache else None,
            env={**docker_spec.environment(spec.env, host_env, self.settings, cache is not None, eval_data),
                 **docker_spec.session_environment(spec, self.settings, self._image_path(client))},
            chosen=chosen,
            labels=self._labels(spec),
            name=name,
            cpuset=() if self.lane is None else self.lane.cpus,
        )
        return self._api("create the container", lambda: client.containers.create(**opts))

    def _run_container(
        self, container: Any, spec: RunSpec, files: RunFiles, chosen: list[GpuDevice], on_started: OnStarted
    ) -> RunOutcome:
        with CappedLog(spec.log_path, spec.log_cap_bytes) as sink, contextlib.ExitStack() as stack:
            # Attach before start so no output is missed (logs=False: the "none" log driver keeps no history).
            # With a stdout_path the stream comes demultiplexed, so stdout can be kept apart for the metric.
            demux = spec.stdout_path is not None
            stream = self._api("attach", lambda: container.attach(stdout=True, stderr=True, stream=True, logs=False,
                                                                  demux=demux))
            self._api("start the container", container.start)
            started = time.monotonic()
            on_started(self._handle(container.id, spec, files))
            live = self._watch(container, chosen)
            output_closed = threading.Event()
            chunks = stream
            if spec.stdout_path is not None:
                copy = stack.enter_context(CappedLog(spec.stdout_path, spec.log_cap_bytes))
                chunks = demux_chunks(stream, UntilDeadline(copy, started + spec.deadline_s))
            pump = LogPump(chunks, sink, output_closed.set).start()
            try:
                ending = wait_for_end(
                    container=container,
                    output_closed=output_closed,
                    spec=spec,
                    files=files,
                    started=started,
                    write_cap=docker_spec.parse_size(self.settings.write_cap),
                    stop_timeout_s=self.settings.stop_timeout_s,
                    engine_errors=_ENGINE_ERRORS,
                )
            finally:
                live.cgroup.stop()
                if live.gpu is not None:
                    live.gpu_peak_mb = live.gpu.stop()
            if live.gpu is not None:
                await_gpu_release(self._gpu_probe(), live.cgroup.seen_pids, self.settings.gpu_release_wait_s)
            # The container is gone, so its stream ends; a broken engine connection may need the timeout.
            pump.join(timeout=5.0)
            truncated = sink.truncated
        return self._outcome(spec, files, live, chosen, ending, truncated)

    def _watch(self, container: Any, chosen: list[GpuDevice]) -> _Live:
        try:
            pid = int(container.client.api.inspect_container(container.id)["State"]["Pid"] or 0)
        except _ENGINE_ERRORS:
            pid = 0  # the waiter sees the engine error and classifies it
        cgroup = CgroupWatch(pid).start()
        gpu = None
        if chosen:
            gpu = PeakSampler(self._gpu_probe(), lambda: cgroup.pids(fallback=lambda: top_pids(container))).start()
        return _Live(cgroup, gpu)

    def _outcome(
        self, spec: RunSpec, files: RunFiles, live: _Live, chosen: list[GpuDevice], end: Ending, truncated: bool
    ) -> RunOutcome:
        if end.cause == "violation":
            files.discard_output()  # over the write cap: what it wrote is junk that fills the disk
        cause, detail = classify(end.cause, end.detail, changed=files.changed(spec), oom=bool(live.cgroup.oom_kills))
        peak: float | None
        if live.gpu_peak_mb is not None:
            peak = live.gpu_peak_mb / 1024  # MiB -> GiB
        else:
            peak = live.cgroup.peak_bytes / 2**30 if live.cgroup.peak_bytes else None
        return RunOutcome(
            cause=cause,
            exit_code=end.exit_code,
            wall_s=end.wall_s,
            kill_latency_s=end.kill_latency_s,
            peak_memory_gb=round(peak, 4) if peak is not None else None,
            gpu_count=len(chosen),
            detail=detail,
            log_truncated=truncated,
        )

    def _handle(self, container_id: str, spec: RunSpec, files: RunFiles) -> dict[str, Any]:
        return {
            "kind": "docker",
            "container_id": container_id,
            "repo": self.repo_id,
            "instance": self.instance,
            "lane": None if self.lane is None else self.lane.index,
            "n": spec.n,
            "engine": self.address,
            "workspace": str(files.private),  # the run's target copy, removed by reap() after a crash
            "keeper_id": files.keeper_id,
            "volume": files.volume,
            "started_at": time.time(),
        }

    # -- /output (docker_output) ------------------------------------------------------------------

    def _hold_output(self, client: Any, spec: RunSpec, files: RunFiles, name: str) -> None:
        """Create the run's size-limited /output volume and start the keeper that holds it mounted."""
        api = client.api
        labels = self._labels(spec)
        volume, opts = f"{name}-output", docker_output.volume_options(self.settings)
        self._api("create the output volume", lambda: api.create_volume(volume, "local", opts, labels))
        files.volume = volume
        keeper_opts = docker_output.keeper_options(self.settings, volume, labels, f"{name}-keeper")
        keeper = self._api("create the output keeper", lambda: client.containers.create(**keeper_opts))
        files.keeper_id = keeper.id
        self._api("start the output keeper", keeper.start)

    def _collect_output(self, files: RunFiles, outcome: RunOutcome) -> None:
        """Copy /output out through the engine; over the cap (or unsafe to unpack) is a violation."""
        if outcome.cause in ("violation", "docker", "interrupted") or files.keeper_id is None:
            return
        keeper_id, cap = files.keeper_id, docker_spec.parse_size(self.settings.write_cap)
        try:
            stream, _stat = self._engine().api.get_archive(keeper_id, docker_spec.OUTPUT, chunk_size=1 << 20)
            why = docker_output.CopyOut(files.output, cap).run(stream)
        except _ENGINE_ERRORS as exc:  # requests' errors are OSErrors; so is a full host disk
            files.discard_output()
            log.warning("docker.output_lost", error=str(exc))
            outcome.cause, outcome.detail = "docker", f"/output could not be copied out: {exc}"
            return
        if why is not None:
            outcome.cause, outcome.detail = "violation", why

    def _release_output(self, files: RunFiles) -> None:
        if files.keeper_id is not None:
            self._remove(files.keeper_id, why="done")
        if files.volume is not None:
            self._remove_volume(files.volume, why="done")

    def _remove_volume(self, name: str, *, why: str) -> None:
        """Remove a run's volume (its keeper is gone first); engine down or still in use: retried later."""
        try:
            self._engine().api.remove_volume(name, force=True)
        except docker.errors.NotFound:
            self._pending_volumes.discard(name)
            return
        except (*_ENGINE_ERRORS, EngineUnavailable) as exc:
            self._pending_volumes.add(name)
            log.warning("docker.volume_remove_failed", volume=name, why=why, error=str(exc))
            return
        self._pending_volumes.discard(name)

    # -- containers -----------------------------------------------------------------------------

    def _reap_container(self, container_id: str) -> bool:
        api = self._engine().api
        try:
            info = api.inspect_container(container_id)
        except docker.errors.NotFound:
            return False
        except _ENGINE_ERRORS as exc:
            raise self._down(exc) from exc
        if info["Config"]["Labels"].get(f"{docker_spec.LABEL_PREFIX}repo") != self.repo_id:
            return False  # not ours: a stale handle must never kill someone else's container
        return self._remove(info["Id"], why="reap")

    def _remove(self, container_id: str, *, why: str) -> bool:
        """Kill and remove; True if there was something to remove. Engine down: retried on the next check/run."""
        try:
            self._engine().api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            self._pending.discard(container_id)
            return False
        except (*_ENGINE_ERRORS, EngineUnavailable) as exc:
            self._pending.add(container_id)
            log.warning("docker.remove_failed", container=container_id[:12], why=why, error=str(exc))
            return False
        self._pending.discard(container_id)
        if why != "done":
            log.info("docker.reaped", container=container_id[:12], why=why)
        return True

    def _reap_pending(self) -> None:
        for container_id in list(self._pending):
            self._remove(container_id, why="pending")
        for volume in list(self._pending_volumes):
            self._remove_volume(volume, why="pending")

    # -- GPUs -----------------------------------------------------------------------------------

    def _gpu_probe(self) -> GpuProbe:
        if self._probe is None:
            self._probe = NvmlProbe()
        return self._probe

    def _select_gpus(self) -> list[GpuDevice]:
        if self.settings.gpus == "none":
            return []
        return select_devices(self._gpu_probe(), self.settings.gpus, self.settings.gpu_min_free_mb)

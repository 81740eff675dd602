"""The GPU probe: which GPUs exist, how much memory is free, and how much a set of processes uses.

NVML (``pynvml``) is the real implementation; ``NoGpu`` serves CPU-only hosts and ``FakeGpu`` tests.
NVML errors are translated to GpuError here and nowhere else.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from autoresearch.errors import GpuError


@dataclass(frozen=True)
class GpuDevice:
    index: int
    uuid: str
    name: str
    total_mb: float
    free_mb: float


class GpuProbe(Protocol):
    def devices(self) -> list[GpuDevice]: ...

    def used_by(self, pids: set[int]) -> float:
        """GPU memory in MiB that these host PIDs hold right now, over all GPUs."""


class NoGpu:
    def devices(self) -> list[GpuDevice]:
        return []

    def used_by(self, pids: set[int]) -> float:
        return 0.0


@dataclass
class FakeGpu:
    gpus: list[GpuDevice] = field(default_factory=list)
    usage: dict[int, float] = field(default_factory=dict)

    def devices(self) -> list[GpuDevice]:
        return list(self.gpus)

    def used_by(self, pids: set[int]) -> float:
        return sum(mb for pid, mb in self.usage.items() if pid in pids)


class NvmlProbe:
    """NVML through pynvml. ``init`` is done on first use, not at construction."""

    def __init__(self) -> None:
        self._nvml: Any = None

    def _lib(self) -> Any:
        if self._nvml is None:
            import pynvml

            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                raise GpuError(f"NVML is not usable: {exc}") from exc
            self._nvml = pynvml
        return self._nvml

    def devices(self) -> list[GpuDevice]:
        nv = self._lib()
        try:
            out = []
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                name = nv.nvmlDeviceGetName(h)
                uuid = nv.nvmlDeviceGetUUID(h)
                out.append(
                    GpuDevice(
                        index=i,
                        uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                        name=name.decode() if isinstance(name, bytes) else str(name),
                        total_mb=mem.total / 2**20,
                        free_mb=mem.free / 2**20,
                    )
                )
            return out
        except nv.NVMLError as exc:
            raise GpuError(f"NVML query failed: {exc}") from exc

    def used_by(self, pids: set[int]) -> float:
        nv = self._lib()
        total = 0.0
        try:
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                for proc in nv.nvmlDeviceGetComputeRunningProcesses(h):
                    if proc.pid in pids and proc.usedGpuMemory is not None:
                        total += proc.usedGpuMemory / 2**20
        except nv.NVMLError as exc:
            raise GpuError(f"NVML query failed: {exc}") from exc
        return total


def probe_from_environment() -> GpuProbe:
    """NVML when a driver answers, else NoGpu (a CPU-only host is not an error)."""
    probe = NvmlProbe()
    try:
        probe.devices()
    except (GpuError, ImportError):
        return NoGpu()
    return probe


def select_devices(probe: GpuProbe, wanted: str | list[str], min_free_mb: float = 1024.0) -> list[GpuDevice]:
    """Resolve a ``gpus`` setting (``none``, ``all``, indices or UUIDs) and check each has free memory."""
    if wanted == "none":
        return []
    found = probe.devices()
    if not found:
        raise GpuError("GPUs were requested but NVML reports none on this host")
    if wanted == "all":
        chosen = found
    else:
        chosen = []
        for key in wanted:
            match = [d for d in found if str(d.index) == key or d.uuid == key]
            if not match:
                raise GpuError(f"GPU {key!r} not found; this host has {[d.index for d in found]}")
            chosen.extend(match)
    for dev in chosen:
        if dev.free_mb < min_free_mb:
            raise GpuError(f"GPU {dev.index} ({dev.name}) has only {dev.free_mb:.0f} MiB free")
    return chosen


class PeakSampler:
    """Samples the GPU memory of a changing set of PIDs on a thread; ``stop`` returns the peak MiB."""

    def __init__(self, probe: GpuProbe, pids: Callable[[], set[int]], interval_s: float = 0.5) -> None:
        self.probe = probe
        self.pids = pids
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> PeakSampler:
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        # A failed sample must not kill the run; the peak is a best effort.
        with contextlib.suppress(GpuError):
            self.peak_mb = max(self.peak_mb, self.probe.used_by(self.pids()))

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sample()
        return self.peak_mb

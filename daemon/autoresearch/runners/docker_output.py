"""A writing run's /output: a size-limited tmpfs volume owned by the engine, copied out after the run.

Why this shape (DEVELOPERS.md, "The Docker write cap"): a bind-mounted host folder is measured by
the daemon, which cannot see into (nor delete) a 0700 folder the container's uid made when the
daemon is not root, and a once-a-second poll lets a fast writer past the cap. A tmpfs of
``write_cap`` bytes is bounded by the kernel whatever the daemon's uid, and puts nothing on the
host's disk while the run lasts (its pages count against the run's memory limit). A tmpfs volume
lives while a container has it mounted, so a small keeper container holds it from before the run
until the engine (root) has streamed it out as a tar; the daemon unpacks that as its own files,
so it can always delete them. Keeper and volume carry the run's labels and are reaped with it.
"""

from __future__ import annotations

import io
import math
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from docker.types import LogConfig

from autoresearch.git import tarsafe
from autoresearch.runners.docker_spec import output_mount, parse_size

if TYPE_CHECKING:
    from autoresearch.ops.config import DockerSettings

PAGE = 4096
MAX_FILES = 100_000
"""Inodes of the tmpfs: empty files take no pages, and each one costs the copy-out and the host an inode."""
ROLE_LABEL = "autoresearch.role"


def volume_options(settings: DockerSettings) -> dict[str, str]:
    """driver_opts of the local driver: a tmpfs of write_cap bytes, owned by the run's uid."""
    opts = f"size={parse_size(settings.write_cap)},nr_inodes={MAX_FILES}"
    uid, _, gid = settings.user.partition(":")
    opts += f",mode=0755,uid={uid},gid={gid if gid.isdigit() else uid}" if uid.isdigit() else ",mode=1777"
    return {"type": "tmpfs", "device": "tmpfs", "o": opts}


def keeper_options(settings: DockerSettings, volume: str, labels: dict[str, str], name: str) -> dict[str, Any]:
    """A container that only keeps the volume mounted: `read` on a stdin nobody writes, fully locked down."""
    return {
        "image": settings.image,
        "command": ["/bin/sh", "-c", "read _"],
        "stdin_open": True,
        "name": name,
        "labels": {**labels, ROLE_LABEL: "keeper"},
        "user": settings.user,
        "mounts": [output_mount(volume)],
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "pids_limit": 16,
        "mem_limit": 64 << 20,
        "init": True,
        "log_config": LogConfig(type="none"),
    }


class _Chunks(io.RawIOBase):
    """A file over the engine's tar stream (an iterator of byte chunks)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            chunk = next(self._it, None)
            if chunk is None:
                return 0
            self._buf = chunk
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class OverCap(Exception):
    """The archive holds more bytes than the cap (sparse files expand when unpacked)."""


class CopyOut:
    """Unpacks the tar of /output into ``dest``: the daemon's own files, modes 0755/0644, at most ``cap`` bytes."""

    def __init__(self, dest: Path, cap: int) -> None:
        self.dest = dest
        self.cap = cap
        self.bytes = 0
        self.pages = 0

    def run(self, chunks: Iterable[bytes]) -> str | None:
        """Copy; returns why the output is a violation (then nothing is kept), or None."""
        shutil.rmtree(self.dest, ignore_errors=True)
        self.dest.mkdir(parents=True)
        self.dest.chmod(0o755)
        try:
            with tarfile.open(fileobj=io.BufferedReader(_Chunks(chunks), 1 << 20), mode="r|") as tar:
                tarsafe.extract(tar, self.dest, self._member)
        except OverCap:
            why = f"/output holds more than the write cap ({self.cap} bytes) once unpacked"
        except tarfile.TarError as exc:
            why = f"/output cannot be copied out safely: {exc}"
        else:
            if self.pages >= math.ceil(self.cap / PAGE):
                why = f"/output reached the write cap ({self.cap} bytes)"
            else:
                return None
        shutil.rmtree(self.dest, ignore_errors=True)
        return why

    def _member(self, member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        name = _strip(member.name)
        if not name:
            return None  # the /output folder itself
        changes: dict[str, Any] = {"name": name}
        if member.islnk():
            changes["linkname"] = _strip(member.linkname)
        if member.isreg():
            self.bytes += member.size
            self.pages += math.ceil(member.size / PAGE)
            if self.bytes > self.cap:
                raise OverCap
        # Owner-only or unreadable modes would keep the evaluator (another uid) out, or the daemon itself.
        changes["mode"] = 0o755 if member.isdir() or member.mode & 0o111 else 0o644
        return tarsafe.replaced(member, **changes)


def _strip(name: str) -> str:
    """Archive names start with the folder's own name (``output/...``)."""
    return name.partition("/")[2]

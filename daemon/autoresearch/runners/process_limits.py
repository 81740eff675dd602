"""The process runner's hard limits around one run: its cgroup (``cgroups``), RLIMIT_FSIZE, sized tmpfs
for /tmp and /dev/shm, and a capped /output; plus the notice of what this host does not enforce.

/output of a writing run (train, prepare) is a tmpfs of ``write_cap`` bytes inside the sandbox, so a run
can put no more than that anywhere, and nothing on the host's disk while it lasts (its pages count
against the run's memory). When the command ends, the sandbox's first shell (not the command: the
command runs with stdin from /dev/null) streams /output as a tar to its stdin, a pipe the daemon reads
and unpacks with ``tarsafe`` through the Docker runner's ``CopyOut``: at most ``write_cap`` bytes, as the
daemon's own files. Whatever a run does to that stream (it can reach the pipe through /proc, as its own
uid) it can only shape its own output, within the cap. A run that fills /output is cause ``write_cap``
and keeps no output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.errors import ConfigError
from autoresearch.runners.base import OUTPUT_MOUNT
from autoresearch.runners.bwrap import Sandbox
from autoresearch.runners.docker_output import CopyOut
from autoresearch.runners.docker_spec import parse_size
from autoresearch.runners.ending import NOT_JUDGED

if TYPE_CHECKING:
    from autoresearch.ops.config import ProcessSettings
    from autoresearch.runners.base import RunSpec

WRITING = ("train", "prepare")
"""Kinds whose /output is writable (the others see a finished run's output read-only)."""
EMPTY = "empty archive"


def capped_output(spec: RunSpec) -> bool:
    return spec.output_dir is not None and spec.kind in WRITING


def sized(sandbox: Sandbox, spec: RunSpec, settings: ProcessSettings) -> Sandbox:
    """The sandbox with sized /tmp and /dev/shm and, for a writing run, /output as a ``write_cap`` tmpfs
    in place of the host folder's bind."""
    sizes = {"/tmp": parse_size(settings.tmpfs_size), "/dev/shm": parse_size(settings.shm_size)}
    tmpfs = tuple(sandbox.tmpfs)
    binds = sandbox.binds
    if capped_output(spec):
        binds = tuple(b for b in binds if b.dest != OUTPUT_MOUNT)
        tmpfs += (OUTPUT_MOUNT,)
        sizes[OUTPUT_MOUNT] = parse_size(settings.write_cap)
    return dataclasses.replace(sandbox, binds=binds, tmpfs=tmpfs, tmpfs_sizes=sizes)


def wrapped(command: str) -> str:
    """The command, then /output streamed as a tar to the shell's stdin (the daemon's pipe); exit status kept."""
    return (f"/bin/sh -c {shlex.quote(command)} </dev/null; rc=$?; "
            f"tar -C {OUTPUT_MOUNT} -cf - . >&0 2>/dev/null; exit $rc")


class OutputCopy:
    """Reads the tar of /output from a pipe while the run lasts, unpacking it into ``dest`` (capped)."""

    def __init__(self, dest: Path, cap: int) -> None:
        self.copy = CopyOut(dest, cap)
        self.dest = dest
        self.read_fd, self.write_fd = os.pipe()
        self.received = 0
        self.why: str | None = None
        self._thread = threading.Thread(target=self._run, name="output-copy", daemon=True)

    def start(self) -> OutputCopy:
        self._thread.start()
        return self

    def sent(self) -> None:
        """The sandbox holds the write end now: ours goes, so the stream ends when the sandbox does."""
        os.close(self.write_fd)

    def _chunks(self) -> Iterator[bytes]:
        while chunk := os.read(self.read_fd, 1 << 20):
            self.received += len(chunk)
            yield chunk

    def _run(self) -> None:
        try:
            self.why = self.copy.run(self._chunks())
            if self.received == 0:
                self.why = EMPTY  # the run never reached the copy (killed at the deadline): no output
        finally:
            for _ in self._chunks():
                pass  # drain a stream it gave up on, so the writer is never stuck
            os.close(self.read_fd)

    def finish(self, timeout_s: float = 60.0) -> str | None:
        """Why the output is a violation, None if it was copied (or there was none)."""
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            return f"the copy of /output did not finish within {timeout_s:g} s after the run"
        return None if self.why == EMPTY else self.why


def check_sizes(settings: ProcessSettings) -> str | None:
    """Every size setting parses (ConfigError, exit 2, naming it if not); the prlimit binary (None: missing,
    then no rlimit is set and the notice says so)."""
    for name in ("memory", "tmpfs_size", "shm_size", "write_cap"):
        try:
            parse_size(getattr(settings, name))
        except ConfigError as exc:
            raise ConfigError(f"process.{name}: {exc}") from exc
    return shutil.which("prlimit")


def output_cause(
    cause: str, detail: str, spec: RunSpec, copy: OutputCopy | None, settings: ProcessSettings,
) -> tuple[str, str]:
    """A run that filled /output is ``write_cap`` (its output is dropped); one whose /output stream could not
    be unpacked safely is a ``violation``. Without a sandbox, /output is the host folder: measured after."""
    if spec.output_dir is None or spec.kind not in WRITING:
        return cause, detail
    cap = parse_size(settings.write_cap)
    why = copy.finish() if copy is not None else _measured(spec.output_dir, cap)
    spec.output_dir.mkdir(parents=True, exist_ok=True)  # the evaluator still gets a (possibly empty) folder
    if cause in (*NOT_JUDGED, "violation", "timeout"):
        return cause, detail  # stopped by the daemon (a copy cut short says nothing) or already a violation
    if why is None:
        return cause, detail
    return ("write_cap" if "write cap" in why else "violation"), why


def _measured(dest: Path, cap: int) -> str | None:
    """Bytes on disk under ``dest`` (sparse files count as allocated), the tree removed when over ``cap``."""
    used = 0
    for folder, dirs, files in os.walk(dest):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                used += (Path(folder) / name).lstat().st_blocks * 512
    if used <= cap:
        return None
    shutil.rmtree(dest, ignore_errors=True)
    return f"/output reached the write cap ({cap} bytes)"

"""The host side of a Docker run's files: the commit's snapshot, the target copy, the output folder, hashes.

The run sees only committed files: ``/workspace`` is the run's snapshot (``RunSpec.snapshot``, made
from the commit by ``git archive``), mounted read-only; the working tree is never read, so untracked
files (``.env``, notes, results.tsv, a planted module) never enter a run. The target is a private
copy mounted read-write over its place (not for ``evaluate``); the committed target stands whatever
the run does, and a changed hash is reported as a violation. A writing run's ``/output`` is an
engine-owned volume (``docker_output``), copied into ``output`` after the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.errors import RunnerError
from autoresearch.runners.hashing import changed_files, file_hash

if TYPE_CHECKING:
    from autoresearch.runners.base import RunSpec

WRITING_KINDS = ("train", "prepare")
"""Kinds whose /output is writable; evaluate and check see the training run's output read-only."""


@dataclass
class RunFiles:
    workspace: Path
    """The run's snapshot of the commit, mounted read-only at /workspace (removed by its maker)."""
    private: Path
    """The run's own folder on the host (the target copy); removed after the run."""
    output: Path
    """The host's output folder: where a writing run's /output is copied, or what evaluate/check read."""
    target: Path | None
    """The copy of the target, mounted read-write over its place in /workspace; None = none writable."""
    writes_output: bool
    hashes: dict[str, str | None] = field(default_factory=dict)
    """Target and read-only files (relative paths) -> sha256 of the committed version."""
    volume: str | None = None
    """The engine volume at /output while a writing run lasts (set by the runner)."""
    keeper_id: str | None = None
    """The container that holds ``volume`` mounted until its content is copied out."""
    home: Path | None = None
    """The host folder at HOME: the session's home (setup, prepare) or the run's layer over it (``runners.home``)."""

    @classmethod
    def create(cls, spec: RunSpec) -> RunFiles:
        if spec.snapshot is None or not spec.snapshot.is_dir():
            raise RunnerError(f"run {spec.n}: no snapshot of the commit to run (RunSpec.snapshot={spec.snapshot})")
        base = spec.log_path.parent.resolve()  # the engine wants absolute bind sources
        base.mkdir(parents=True, exist_ok=True)
        workspace = spec.snapshot.resolve()
        workspace.chmod(0o755)  # the container's uid is not ours (git archive gives the rest 0644/0755)
        output = (spec.output_dir or base / f"{spec.log_path.stem}-output").resolve()
        private = Path(tempfile.mkdtemp(prefix=f".workspace-{spec.n}-", dir=base))
        try:
            committed = workspace / spec.target
            target = None
            if spec.kind != "evaluate" and committed.is_file():
                target = private / committed.name
                shutil.copyfile(committed, target)
                target.chmod(0o666)
            writes = spec.kind in WRITING_KINDS
            if writes:
                shutil.rmtree(output, ignore_errors=True)  # a re-run starts empty
        except BaseException:
            shutil.rmtree(private, ignore_errors=True)
            raise
        files = cls(workspace=workspace, private=private, output=output, target=target, writes_output=writes)
        files.hashes = files.current_hashes(spec)
        return files

    def current_hashes(self, spec: RunSpec) -> dict[str, str | None]:
        hashes = {rel: file_hash(self.workspace / rel) for rel in (spec.target, *spec.readonly)}
        if self.target is not None:
            hashes[spec.target] = file_hash(self.target)
        return hashes

    def changed(self, spec: RunSpec) -> list[str]:
        """Files among the target and the read-only ones whose content changed during the run."""
        return changed_files(self.hashes, self.current_hashes(spec))

    def written_bytes(self) -> int:
        """Bytes the run put on the host's disk so far: the target copy (/output is a bounded volume)."""
        with contextlib.suppress(OSError):
            return self.target.stat().st_size if self.target is not None else 0
        return 0

    def discard_output(self) -> None:
        if self.writes_output:
            shutil.rmtree(self.output, ignore_errors=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.private, ignore_errors=True)
        if self.writes_output:
            with contextlib.suppress(OSError):
                self.output.rmdir()  # only if empty


def cache_dir_of(spec: RunSpec) -> Path | None:
    """The host's data/cache folder for this run (created if missing), or None."""
    raw = spec.cache_dir or spec.env.get("AUTORESEARCH_CACHE")
    if not raw:
        return None
    path = Path(raw).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def let_container_write(cache: Path, user: str) -> None:
    """Prepare writes the cache as the container's uid: hand the folder to it (or open it up)."""
    uid, _, gid = user.partition(":")
    if os.geteuid() == 0 and uid.isdigit():
        ids = (int(uid), int(gid) if gid.isdigit() else int(uid))
        for path in (cache, *cache.rglob("*")):
            with contextlib.suppress(OSError):
                os.chown(path, *ids, follow_symlinks=False)
    else:
        cache.chmod(0o777)

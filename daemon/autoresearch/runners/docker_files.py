"""The host side of a Docker run's files: a private copy of the tree, the output folder, hashes.

The container runs as an unprivileged uid, so it gets a copy of the checkout (without .git) whose
modes it can read, and a copy of the target it can write. The real working tree is never mounted:
the committed target stands whatever the run does, and a changed hash is reported as a violation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.runners.hashing import changed_files, hash_files

if TYPE_CHECKING:
    from autoresearch.runners.base import RunSpec


@dataclass
class RunFiles:
    workspace: Path
    """Copy of the checkout, mounted read-only at /workspace; removed after the run."""
    output: Path
    """The run's writable output folder (kept when the run wrote something)."""
    target: Path
    """The copy of the target file, mounted read-write over its place in /workspace."""
    hashes: dict[str, str | None] = field(default_factory=dict)
    """Target and read-only files (relative paths) -> sha256 before the run."""
    copied_bytes: int = 0

    @classmethod
    def create(cls, spec: RunSpec, skip: tuple[Path, ...] = ()) -> RunFiles:
        base = spec.log_path.parent.resolve()  # the engine wants absolute bind sources
        base.mkdir(parents=True, exist_ok=True)
        workspace = Path(tempfile.mkdtemp(prefix=f".workspace-{spec.n}-", dir=base))
        output = base / f"{spec.log_path.stem}-output"
        try:
            # Never copy the copy into itself, wherever the log folder sits.
            copied = copy_tree(spec.workdir, workspace, skip=(*skip, base, workspace))
            shutil.rmtree(output, ignore_errors=True)
            output.mkdir()
            output.chmod(0o777)  # the container's uid is not ours; the folder is private to this run
            target = workspace / spec.target
            if target.is_file():
                target.chmod(0o666)
        except BaseException:
            shutil.rmtree(workspace, ignore_errors=True)
            raise
        files = cls(workspace=workspace, output=output, target=target, copied_bytes=copied)
        files.hashes = files.current_hashes(spec)
        return files

    def current_hashes(self, spec: RunSpec) -> dict[str, str | None]:
        return hash_files(self.workspace, (spec.target, *spec.readonly))

    def changed(self, spec: RunSpec) -> list[str]:
        """Files among the target and the read-only ones whose content changed during the run."""
        return changed_files(self.hashes, self.current_hashes(spec))

    def written_bytes(self) -> int:
        """Bytes the run can have put on the host's disk: the target copy plus the output folder."""
        with contextlib.suppress(OSError):
            return self.target.stat().st_size + tree_size(self.output)
        return 0

    def discard_output(self) -> None:
        shutil.rmtree(self.output, ignore_errors=True)

    def cleanup(self) -> None:
        shutil.rmtree(self.workspace, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.output.rmdir()  # only if empty


def tree_size(root: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total


def copy_tree(src: Path, dst: Path, skip: tuple[Path, ...] = ()) -> int:
    """Copy regular files, directories and symlinks (as links) from ``src``; never .git.

    Modes become world-readable (0644/0755) so the container's uid can read everything; fifos,
    sockets and devices are left out; ``skip`` folders (the run's own log folder) too.
    """
    # The log folder is skipped unless it is the tree itself (its own files, e.g. run.log, still go).
    skipped = {p.resolve() for p in skip} - {src.resolve()}
    dst.chmod(0o755)
    total = 0
    for dirpath, dirs, names in os.walk(src):
        here = Path(dirpath)
        out = dst / here.relative_to(src)
        keep = []
        for d in dirs:
            path = here / d
            if d == ".git" or path.resolve() in skipped:
                continue
            if path.is_symlink():
                names.append(d)
            else:
                keep.append(d)
                (out / d).mkdir(mode=0o755)
                (out / d).chmod(0o755)
        dirs[:] = keep
        for name in names:
            if name != ".git":
                total += _copy_entry(here / name, out / name)
    return total


def _copy_entry(path: Path, dest: Path) -> int:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        dest.symlink_to(path.readlink())
        return 0
    if not stat.S_ISREG(st.st_mode):
        return 0
    shutil.copyfile(path, dest)
    dest.chmod(0o755 if st.st_mode & 0o111 else 0o644)
    return st.st_size


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

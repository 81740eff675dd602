"""File hashing for runs: the target and read-only files, hashed before a run and compared after.

A run or an agent may leave anything at a watched path: a FIFO (a plain ``open`` blocks forever,
and SIGTERM does not stop the daemon there), a link to a host file, a sparse file of 64 GiB (hours
of hashing zeros). So a file is opened only with ``O_NOFOLLOW | O_NONBLOCK``, checked with ``fstat``
to be a regular file, and its size is checked before a byte is read: anything else gets a marker
instead of a hash, which differs from every real hash, so the change is seen without reading it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

MAX_HASH_BYTES = 4 << 20
"""Largest file hashed (the proposal cap on the target): a bigger one is marked by size and inode
change time, never read."""
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotRegularFile(OSError):
    """The path is a link, a FIFO, a socket, a device or a folder: the daemon does not open it."""


@contextmanager
def open_regular(path: Path) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """The open file and its ``fstat``, only for a regular file that is not a link (NotRegularFile
    otherwise; FileNotFoundError when missing). Never blocks, whatever is there."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFile(errno.ELOOP, "a symbolic link", str(path)) from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(errno.EINVAL, f"not a regular file (mode {stat.filemode(st.st_mode)})", str(path))
        yield fh, st


def file_hash(path: Path, max_bytes: int = MAX_HASH_BYTES) -> str | None:
    """sha256 of a regular file's content; a ``link:``, ``special:`` or ``oversize:`` marker for a link,
    anything not a regular file, or a file over ``max_bytes``; None when it is missing or unreadable."""
    digest = hashlib.sha256()
    try:
        with open_regular(path) as (fh, st):
            if st.st_size > max_bytes:
                return _oversize(st)
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                if fh.tell() > max_bytes:  # it grew while being read
                    return _oversize(os.fstat(fh.fileno()))
    except NotRegularFile:
        return _marker(path)
    except OSError:
        return None
    return digest.hexdigest()


def _oversize(st: os.stat_result) -> str:
    # the inode change time moves with every write, so a big read-only file is still watched unread
    return f"oversize:{st.st_size}:{st.st_ino}:{st.st_ctime_ns}"


def _marker(path: Path) -> str | None:
    try:
        st = path.lstat()
        return "link:" + str(path.readlink()) if stat.S_ISLNK(st.st_mode) else f"special:{stat.filemode(st.st_mode)}"
    except OSError:
        return None


def hash_files(root: Path, paths: Iterable[str]) -> dict[str, str | None]:
    """Relative path -> sha256 (None = missing) for each of ``paths`` under ``root``."""
    return {rel: file_hash(root / rel) for rel in paths}


def changed_files(before: Mapping[str, str | None], after: Mapping[str, str | None]) -> list[str]:
    """Paths whose hash differs (a file that appeared or vanished counts as changed)."""
    return [rel for rel, digest in before.items() if after.get(rel) != digest]

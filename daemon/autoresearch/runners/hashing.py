"""File hashing for runs: the target and read-only files, hashed before a run and compared after."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path


def file_hash(path: Path) -> str | None:
    """sha256 of a file's content; None when it is missing or unreadable."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def hash_files(root: Path, paths: Iterable[str]) -> dict[str, str | None]:
    """Relative path -> sha256 (None = missing) for each of ``paths`` under ``root``."""
    return {rel: file_hash(root / rel) for rel in paths}


def changed_files(before: Mapping[str, str | None], after: Mapping[str, str | None]) -> list[str]:
    """Paths whose hash differs (a file that appeared or vanished counts as changed)."""
    return [rel for rel, digest in before.items() if after.get(rel) != digest]

"""Unpacking a tar without trusting it: tarfile's ``data`` filter, also where Python lacks it.

``tarfile.data_filter`` and ``extractall(filter=)`` came with Python 3.11.4; Debian bookworm's
python3 (3.11.2, the daemon's image) has neither. ``safe_member`` is the same policy written out:
no absolute or escaping names, no device or fifo, no link that points out of the destination, no
set-id bits or group/other write, ownership ignored (the files become the extracting user's).
"""

from __future__ import annotations

import copy
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

MemberFilter = Callable[[tarfile.TarInfo, str], "tarfile.TarInfo | None"]


class UnsafeMember(tarfile.TarError):
    """A member that would land outside the destination, or is not a plain file, folder or link."""


def safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """The member as the ``data`` filter would extract it; raises UnsafeMember (a TarError) if refused."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        return data_filter(member, dest)  # type: ignore[no-any-return]
    return _data_filter(member, dest)


def _data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    root = Path(dest).resolve()
    name = member.name
    if Path(name).is_absolute() or not _inside(root, root / name):
        raise UnsafeMember(f"{name!r} would be outside the destination")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeMember(f"{name!r} is a special file")
    if member.issym():
        link = member.linkname
        if Path(link).is_absolute() or not _inside(root, root / Path(name).parent / link):
            raise UnsafeMember(f"{name!r} links outside the destination ({link!r})")
    if member.islnk() and not _inside(root, root / member.linkname):
        raise UnsafeMember(f"{name!r} links outside the destination ({member.linkname!r})")
    mode = member.mode & 0o755 & ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX)
    if member.isreg():
        mode |= stat.S_IRUSR | stat.S_IWUSR
    return replaced(member, mode=mode, uid=os.getuid(), gid=os.getgid(), uname="", gname="")


def replaced(member: tarfile.TarInfo, **changes: object) -> tarfile.TarInfo:
    """A copy of ``member`` with ``changes`` (``TarInfo.replace`` is 3.11.4+ too); it keeps where its
    data starts, so it extracts from a stream like the original."""
    copied = copy.copy(member)
    for key, value in changes.items():
        setattr(copied, key, value)
    return copied


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path``, its links resolved, stays in ``root`` (a resolved folder)."""
    return path.resolve().is_relative_to(root)


def extract(tar: tarfile.TarFile, dest: Path, member_filter: MemberFilter | None = None) -> None:
    """Extract every member in order (works on a stream), each first through ``member_filter``, then
    through ``safe_member``. Folders get their modes at once, so a filter must keep them enterable."""
    where = str(dest)
    trusted = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    for member in tar:
        chosen = member_filter(member, where) if member_filter is not None else member
        if chosen is not None:
            tar.extract(safe_member(chosen, where), where, **trusted)  # type: ignore[arg-type]

"""/output's copy-out without an engine: the tar the engine streams, unpacked as the daemon's own files."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from autoresearch.ops.config import DockerSettings
from autoresearch.runners.docker_output import PAGE, CopyOut, keeper_options, volume_options


def archive(*entries: tuple[str, str, int, bytes | str]) -> list[bytes]:
    """The engine's stream for /output: (name, type, mode, data or link target), in 1000-byte chunks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        root = tarfile.TarInfo("output")
        root.type, root.mode, root.uid = tarfile.DIRTYPE, 0o755, 65534
        tar.addfile(root)
        for name, kind, mode, data in entries:
            info = tarfile.TarInfo(f"output/{name}")
            info.mode, info.uid = mode, 65534
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind in ("sym", "hard"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = str(data)
                tar.addfile(info)
            else:
                body = data if isinstance(data, bytes) else data.encode()
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    raw = buf.getvalue()
    return [raw[i : i + 1000] for i in range(0, len(raw), 1000)]


def test_a_0700_folder_is_copied_as_the_daemons_own_readable_files(tmp_path):
    dest = tmp_path / "out"
    stream = archive(("d", "dir", 0o700, b""), ("d/x", "file", 0o600, b"42"), ("run.sh", "file", 0o700, "#!/bin/sh"),
                     ("d/y", "hard", 0o600, "output/d/x"), ("rel", "sym", 0o777, "d/x"))  # fmt: skip
    assert CopyOut(dest, cap=1 << 20).run(stream) is None
    assert (dest / "d" / "x").read_text() == "42" and (dest / "d" / "y").read_text() == "42"
    assert (dest / "d").stat().st_mode & 0o777 == 0o755 and (dest / "d" / "x").stat().st_mode & 0o777 == 0o644
    assert (dest / "run.sh").stat().st_mode & 0o777 == 0o755 and os.readlink(dest / "rel") == "d/x"
    assert {p.stat().st_uid for p in dest.rglob("*") if not p.is_symlink()} == {os.geteuid()}


def test_output_that_filled_the_cap_is_a_violation_and_is_discarded(tmp_path):
    dest = tmp_path / "out"
    why = CopyOut(dest, cap=3 * PAGE).run(archive(("a", "file", 0o644, bytes(2 * PAGE)), ("b", "file", 0o644, b"x")))
    assert why is not None and "reached the write cap" in why
    assert not dest.exists()
    assert CopyOut(dest, cap=3 * PAGE).run(archive(("a", "file", 0o644, bytes(2 * PAGE)))) is None


def test_more_bytes_than_the_cap_once_unpacked_stops_the_copy(tmp_path):
    """Sparse files take no tmpfs pages but expand on the host: the copy stops at the cap."""
    dest = tmp_path / "out"
    stream = archive(*((f"s{i}", "file", 0o644, bytes(3000)) for i in range(5)))
    why = CopyOut(dest, cap=10_000).run(stream)
    assert why is not None and "more than the write cap" in why
    assert not dest.exists()


def test_links_out_of_the_output_are_refused(tmp_path):
    for entry in (("evil", "sym", 0o777, "/etc/shadow"), ("up", "sym", 0o777, "../../x")):
        why = CopyOut(tmp_path / "out", cap=1 << 20).run(archive(entry))
        assert why is not None and "cannot be copied out safely" in why
        assert not (tmp_path / "out").exists()


def test_volume_and_keeper_are_bounded_and_locked_down():
    opts = volume_options(DockerSettings(write_cap="32m"))
    assert opts["type"] == "tmpfs" and "size=33554432" in opts["o"] and "uid=65534,gid=65534" in opts["o"]
    assert "nr_inodes=" in opts["o"]
    assert "mode=1777" in volume_options(DockerSettings(user="nobody"))["o"]
    keeper = keeper_options(DockerSettings(), "vol", {"autoresearch.repo": "r"}, "k")
    assert keeper["labels"] == {"autoresearch.repo": "r", "autoresearch.role": "keeper"}
    assert keeper["network_mode"] == "none" and keeper["cap_drop"] == ["ALL"] and keeper["read_only"]
    assert keeper["mounts"][0]["Source"] == "vol" and keeper["user"] == "65534:65534"


def test_unpacked_output_is_deletable_by_the_daemon(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    assert CopyOut(dest, cap=1 << 20).run(archive(("d", "dir", 0o000, b""), ("d/x", "file", 0o000, b"1"))) is None
    import shutil

    shutil.rmtree(dest)
    assert not dest.exists()

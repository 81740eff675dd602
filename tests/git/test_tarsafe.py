"""tarsafe: the data filter's policy, with tarfile's own filter and with the fallback (Python < 3.11.4)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from autoresearch.git import tarsafe


@pytest.fixture(params=["tarfile", "fallback"])
def policy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile.data_filter")
    return str(request.param)


def tar_of(*members: tarfile.TarInfo, data: bytes = b"x") -> tarfile.TarFile:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            if m.isreg():
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)
    buf.seek(0)
    return tarfile.open(fileobj=buf, mode="r|")


def info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.mode, m.linkname, m.uid, m.gid = kind, mode, link, 4242, 4242
    return m


def test_plain_members_are_extracted_as_ours_without_setid_bits(policy, tmp_path):
    tarsafe.extract(tar_of(info("d", tarfile.DIRTYPE, 0o775), info("d/f", mode=0o4777),
                           info("d/l", tarfile.SYMTYPE, link="f")), tmp_path)  # fmt: skip
    f = tmp_path / "d" / "f"
    assert f.read_bytes() == b"x" and os.readlink(tmp_path / "d" / "l") == "f"
    assert f.stat().st_mode & 0o7777 == 0o755 and (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert f.stat().st_uid == os.geteuid()


@pytest.mark.parametrize(
    "member",
    [
        info("../evil"),
        info("l", tarfile.SYMTYPE, link="/etc/shadow"),
        info("l", tarfile.SYMTYPE, link="../../x"),
        info("h", tarfile.LNKTYPE, link="../x"),
        info("dev", tarfile.CHRTYPE),
    ],
    ids=["dotdot", "abs-link", "link-out", "hardlink-out", "device"],
)
def test_escapes_and_special_files_are_refused(policy, tmp_path, member):
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(tarfile.TarError):
        tarsafe.extract(tar_of(member), dest)
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()


def test_an_absolute_name_never_lands_outside(policy, tmp_path):
    name = str(tmp_path / "outside")
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        tarsafe.extract(tar_of(info(name)), dest)  # tarfile's filter strips the slash; the fallback refuses
    except tarfile.TarError:
        pass
    assert not Path(name).exists()


def test_a_commit_with_a_link_out_of_the_repo_is_a_clear_repo_error(policy, tmp_path):
    from autoresearch.errors import RepoError
    from autoresearch.git.workspace import GitWorkspace
    from tests.conftest import git, make_repo

    repo = make_repo(tmp_path / "repo")
    (repo / "data").symlink_to("/etc/passwd")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a link out")
    ws = GitWorkspace.open(repo)
    with pytest.raises(RepoError, match="cannot be unpacked"):
        ws.export(ws.head(), tmp_path / "snap")
    git(repo, "rm", "-q", "data")
    git(repo, "commit", "-q", "-m", "no link")
    ws.export(ws.head(), tmp_path / "snap2")
    assert (tmp_path / "snap2" / "train.py").read_text() == (repo / "train.py").read_text()

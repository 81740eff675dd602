from __future__ import annotations

from pathlib import Path

from autoresearch.runners.base import TRUNCATION_NOTICE, CappedLog, log_tail


def test_capped_log_cuts_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    with CappedLog(path, cap_bytes=10) as log:
        log.write(b"12345")
        log.write(b"67890abc")
        log.write(b"more")
    assert log.truncated
    assert path.read_bytes() == b"1234567890" + TRUNCATION_NOTICE


def test_capped_log_exactly_full_then_more_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    with CappedLog(path, cap_bytes=8) as log:
        log.write(b"12345678")
        assert not log.truncated
        log.write(b"9")
    assert log.truncated
    assert path.read_bytes() == b"12345678" + TRUNCATION_NOTICE


def test_capped_log_appends_and_tail(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    with CappedLog(path, cap_bytes=1000) as log:
        log.pump([b"a\n", b"b\n"])
    assert not log.truncated
    assert log_tail(path, max_bytes=2) == "b\n"
    assert log_tail(tmp_path / "missing.log") == ""

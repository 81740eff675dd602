"""The access rules without a server: which addresses are loopback, where the token comes from, when a
listener without one is refused, the header/cookie check, and the token scrubbed from log lines."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import structlog

from autoresearch.errors import ConfigError
from autoresearch.ops import logs
from autoresearch.ops.config import HttpSettings
from autoresearch.web.access import COOKIE, Listen, authorized, read_token, redact_logs, required_token

TOKEN = "0123456789abcdef-token"


@pytest.mark.parametrize(("text", "host", "port", "loopback"), [
    ("127.0.0.1:8765", "127.0.0.1", 8765, True),
    ("127.3.4.5:1", "127.3.4.5", 1, True),
    ("[::1]:0", "::1", 0, True),
    ("localhost:80", "localhost", 80, True),
    ("0.0.0.0:8765", "0.0.0.0", 8765, False),
    ("[::]:8765", "::", 8765, False),
    ("10.1.2.3:8765", "10.1.2.3", 8765, False),
])
def test_listen_addresses_and_which_are_loopback(text: str, host: str, port: int, loopback: bool) -> None:
    listen = Listen.parse(text)
    assert (listen.host, listen.port) == (host, port)
    assert listen.is_loopback() is loopback


@pytest.mark.parametrize("text", ["", "8765", ":8765", "host:", "host:http", "127.0.0.1:70000"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        Listen.parse(text)


def test_the_token_comes_from_the_file_or_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / "file").write_text(f"  {TOKEN}\n")
    (tmp_path / "http_token").write_text("from-systemd-credential-0123")
    assert read_token(HttpSettings(token_file=tmp_path / "file"), {}) == TOKEN
    creds = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert read_token(HttpSettings(), creds) == "from-systemd-credential-0123"
    assert read_token(HttpSettings(token_file=tmp_path / "file"), creds) == TOKEN  # the setting wins
    assert read_token(HttpSettings(), {}) is None
    with pytest.raises(ConfigError, match="cannot read it"):
        read_token(HttpSettings(token_file=tmp_path / "missing"), {})
    (tmp_path / "spaced").write_text("two words that are long enough")
    with pytest.raises(ConfigError, match="one word"):
        read_token(HttpSettings(token_file=tmp_path / "spaced"), {})


def test_a_public_listener_needs_a_token_unless_a_container_is_published_on_loopback(tmp_path: Path) -> None:
    public, local = Listen.parse("0.0.0.0:8765"), Listen.parse("127.0.0.1:8765")
    assert required_token(local, HttpSettings(), {}) is None
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0:8765 without a token"):
        required_token(public, HttpSettings(), {}, container=lambda: True)  # a container, but not said so
    allowed = HttpSettings(container_published_on_loopback=True)
    assert required_token(public, allowed, {}, container=lambda: True) is None
    with pytest.raises(ConfigError, match="this is not a container"):
        required_token(public, allowed, {}, container=lambda: False)
    (tmp_path / "t").write_text(TOKEN)
    with_token = HttpSettings(token_file=tmp_path / "t")
    assert required_token(public, with_token, {}) == TOKEN
    assert required_token(local, with_token, {}) == TOKEN  # configured: required on loopback too


def test_the_token_is_accepted_in_the_header_or_the_cookie_only() -> None:
    assert authorized(None, {}, {})
    assert authorized(TOKEN, {"authorization": f"Bearer {TOKEN}"}, {})
    assert authorized(TOKEN, {"authorization": f"bearer {TOKEN}"}, {})
    assert authorized(TOKEN, {}, {COOKIE: TOKEN})
    assert not authorized(TOKEN, {}, {})
    assert not authorized(TOKEN, {"authorization": TOKEN}, {})  # no scheme
    assert not authorized(TOKEN, {"authorization": f"Bearer {TOKEN}x"}, {})
    assert not authorized(TOKEN, {}, {"other": TOKEN})


def test_the_token_is_scrubbed_from_structlog_and_stdlib_log_lines() -> None:
    out = io.StringIO()
    saved = structlog.get_config()
    logger = logging.getLogger("uvicorn.error")
    names = ("uvicorn", "uvicorn.error", "uvicorn.access", "")
    filters = {name: list(logging.getLogger(name).filters) for name in names}
    try:
        logs.configure(stream=out, json=True)
        redact_logs(TOKEN)
        structlog.get_logger("t").info("event", header=f"Bearer {TOKEN}")
        record = logger.makeRecord("uvicorn.error", logging.ERROR, __file__, 1, "bad request %s", (f"?t={TOKEN}",),
                                   None)
        assert all(f.filter(record) for f in logger.filters)
        assert TOKEN not in record.getMessage() and "[redacted]" in record.getMessage()
        line = json.loads(out.getvalue().splitlines()[-1])
        assert line["header"] == "Bearer [redacted]"
    finally:
        structlog.configure(**saved)
        for name in names:
            logging.getLogger(name).filters[:] = filters[name]

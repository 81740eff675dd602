"""``autoresearch serve`` over real HTTP: who may read it (loopback, token, cookie), what it refuses
to start with (exit 2), the security headers, the token kept out of logs, archived sessions."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import httpx
import pytest

from autoresearch.journal.ledger import parse_results
from tests.conftest import cli, make_repo
from tests.web.conftest import daemon, recorded_session, serving

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session with three recorded experiments (the daemon has stopped)."""
    return recorded_session(tmp_path_factory.mktemp("web"), "one", 3)


def test_a_non_loopback_bind_without_a_token_exits_2(session: Path) -> None:
    result = cli("serve", str(session), "--listen", "0.0.0.0:0", timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to listen on 0.0.0.0:0 without a token" in result.stderr
    assert "token_file" in result.stderr


@pytest.mark.parametrize(("listen", "message"), [
    ("8765", "expected HOST:PORT"),
    ("127.0.0.1:99999", "expected HOST:PORT"),
])
def test_a_bad_listen_address_exits_2(session: Path, listen: str, message: str) -> None:
    result = cli("serve", str(session), "--listen", listen, timeout=60)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_repo_without_a_session_exits_2(tmp_path: Path) -> None:
    result = cli("serve", str(make_repo(tmp_path / "bare")), timeout=60)
    assert result.returncode == 2 and "has no autoresearch session" in result.stderr, result.stderr


def test_a_busy_port_exits_2_with_the_reason(session: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = cli("serve", str(session), "--listen", f"127.0.0.1:{port}", timeout=60)
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stderr, result.stderr


def test_a_short_token_is_refused(session: Path, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("short\n")
    result = cli("serve", str(session), "--listen", "0.0.0.0:0", timeout=60,
                 env={"AUTORESEARCH_HTTP__TOKEN_FILE": str(tmp_path / "token")})
    assert result.returncode == 2 and "at least 16 characters" in result.stderr, result.stderr


def test_with_a_token_every_route_needs_it_and_the_cookie_login_works(session: Path, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    env = {"AUTORESEARCH_HTTP__TOKEN_FILE": str(tmp_path / "token")}
    with serving(session, env=env, listen="0.0.0.0:0") as served, httpx.Client(base_url=served.url) as http:
        for path in ("/api/state", "/metrics", "/events", "/chart.svg", "/api/diff/1", "/api/log/1", "/",
                     f"/api/state?token={TOKEN}", f"/?token={TOKEN}"):
            assert http.get(path).status_code == 401, path
        assert http.get("/static/app.css").status_code == 200  # the login form's style: the package's, public
        assert http.get("/api/state", headers={"authorization": "Bearer wrong-token-0123456789"}).status_code == 401
        page = http.get("/", headers={"accept": "text/html"})
        assert page.status_code == 401 and 'action="/login"' in page.text  # the login form, not the page

        bearer = http.get("/api/state", headers={"authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200 and len(bearer.json()["rows"]) == 3
        assert "default-src 'none'" in bearer.headers["content-security-policy"]
        assert http.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200

        assert http.post("/login", data={"token": "wrong-token-0123456789"}).status_code == 401
        login = http.post("/login", data={"token": TOKEN})
        assert login.status_code == 303 and login.headers["location"] == "/"
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        assert http.get("/api/state").status_code == 200  # the client now sends the cookie
        with http.stream("GET", "/events") as events:  # as a browser's EventSource does: the cookie only
            assert events.status_code == 200
            lines = events.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) in ("event: rows", "event: state")
        assert http.get("/").status_code == 200
    assert TOKEN not in served.log()
    assert "http.unauthorized" in served.log()


def test_loopback_needs_no_login_and_serves_the_page_assets_and_chart(session: Path) -> None:
    with serving(session) as served, httpx.Client(base_url=served.url) as http:
        page = http.get("/")
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "https://" not in page.text and "http://" not in page.text  # no CDN
        assert http.get("/static/app.js").status_code == 200
        chart = http.get("/chart.svg")
        assert chart.status_code == 200 and chart.headers["content-type"].startswith("image/svg+xml")
        assert b"<script" not in chart.content
        assert http.get("/api/diff/999").status_code == 404
        # DNS rebinding: a page on another name that resolves to 127.0.0.1 gets nothing.
        assert http.get("/api/state", headers={"host": "rebind.example:8765"}).status_code == 403
        assert http.get("/", headers={"host": "rebind.example"}).status_code == 403
        for host in ("localhost:1", "127.0.0.1", "[::1]:8765"):
            assert http.get("/api/state", headers={"host": host}).status_code == 200, host
        diff = http.get("/api/diff/1")
        assert diff.status_code == 200 and ("+++ b/train.py" in diff.text or "no change" in diff.text)


def test_an_archived_session_is_served_by_name(session: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "research")
    assert cli("init", str(repo), "--tag", "old", "--runner", "process", "--budget", "5").returncode == 0
    assert cli("run", str(repo), "--max-experiments", "2").returncode == 0
    with serving(repo) as served, httpx.Client(base_url=served.url) as http:
        assert http.get("/api/state").json()["tag"] == "old"
        assert cli("init", str(repo), "--tag", "new").returncode == 0  # a new session under a running server
        deadline = time.monotonic() + 30
        while (state := http.get("/api/state").json())["tag"] != "new":  # it follows the new journal
            assert time.monotonic() < deadline, state["tag"]
            time.sleep(0.3)
        assert state["rows"] == []
    archived = [p.name for p in (repo / ".git/autoresearch/archive").iterdir()]
    assert len(archived) == 1 and archived[0].startswith("old-")
    unknown = cli("serve", str(repo), "--archive", "nope", timeout=60)
    assert unknown.returncode == 2 and archived[0] in unknown.stderr, unknown.stderr
    with serving(repo, "--archive", archived[0]) as served, httpx.Client(base_url=served.url) as http:
        state = http.get("/api/state").json()
        assert state["tag"] == "old" and state["archived"] == archived[0] and len(state["rows"]) == 2


def test_the_daemon_serves_the_dashboard_itself_with_http_listen(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "research")
    assert cli("init", str(repo), "--tag", "d", "--runner", "process", "--budget", "5").returncode == 0
    refused = cli("run", str(repo), "--max-experiments", "2", env={"AUTORESEARCH_HTTP__LISTEN": "0.0.0.0:0"})
    assert refused.returncode == 2 and "without a token" in refused.stderr, refused.stderr
    assert parse_results((repo / "results.tsv").read_text()) == []  # refused before any experiment
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    env = {"AUTORESEARCH_HTTP__LISTEN": f"127.0.0.1:{port}"}
    with daemon(repo, "--max-experiments", "3", env=env) as run:
        deadline = time.monotonic() + 120
        rows: list[dict[str, object]] = []
        while len(rows) < 1:
            assert run.poll() is None and time.monotonic() < deadline, "no row served while the daemon ran"
            with contextlib.suppress(httpx.TransportError):
                rows = httpx.get(f"http://127.0.0.1:{port}/api/state").json()["rows"]
            time.sleep(0.3)
        assert run.wait(120) == 0, run.stderr.read()[-3000:] if run.stderr else ""
    with pytest.raises(httpx.TransportError):  # the daemon's exit closed it
        httpx.get(f"http://127.0.0.1:{port}/api/state", timeout=2)

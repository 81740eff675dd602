"""A local fake of the Messages API, for tests and offline demos: an HTTP server on 127.0.0.1 that answers
``POST /v1/messages`` from a script (messages, errors, delays, or callables that compute a reply) and
records every request. It checks requests the way the real API would (alternating roles, every tool_use
answered, at most four cache breakpoints, no empty text), so a malformed conversation fails loudly.

    with FakeMessagesAPI([message(tool_use("finish", {...}))]) as api:
        client = anthropic.Anthropic(api_key="test", base_url=api.url, max_retries=0)

``python -m autoresearch.agents.fake_messages --target train.py`` serves a ToyResearcher (it appends a
comment to the target each time) until interrupted, for trying ``--agent anthropic`` without a key:
point ANTHROPIC_BASE_URL at the URL it prints.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
    413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}  # fmt: skip
_ids = itertools.count(1)


@dataclass(frozen=True)
class Fail:
    """An error response."""

    status: int
    message: str = "scripted failure"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Wait ``seconds`` (past the client's timeout, say), then answer with ``then``."""

    seconds: float
    then: Entry


Entry = Union[dict[str, Any], Fail, Delay, Callable[[dict[str, Any]], "Entry"]]  # noqa: UP007 (runtime alias)


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: dict[str, Any]


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, tool_input: dict[str, Any], block_id: str | None = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": block_id or f"toolu_fake_{next(_ids)}", "name": name, "input": tool_input}


def usage(input: int = 100, output: int = 50, cache_read: int = 0, cache_write: int = 0) -> dict[str, int]:  # noqa: A002
    return {
        "input_tokens": input,
        "output_tokens": output,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
    }


def message(
    *content: dict[str, Any], tokens: dict[str, int] | None = None, stop_reason: str | None = None
) -> dict[str, Any]:
    """An assistant message; stop_reason is tool_use when it calls a tool, else end_turn."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return {
        "id": f"msg_fake_{next(_ids)}", "type": "message", "role": "assistant", "model": "fake-model",
        "content": list(content), "stop_reason": stop_reason, "stop_sequence": None, "usage": tokens or usage(),
    }  # fmt: skip


def check_request(body: dict[str, Any]) -> str | None:
    """What the real API would reject in this request body, or None."""
    messages = body.get("messages")
    if not isinstance(body.get("model"), str) or not isinstance(body.get("max_tokens"), int):
        return "model and max_tokens are required"
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled" and not 1024 <= thinking.get("budget_tokens", 0) < body["max_tokens"]:
        return "thinking.budget_tokens must be >= 1024 and less than max_tokens"
    blocks = [*_blocks(body.get("system")), *_blocks(body.get("tools"))]
    for msg in messages:
        blocks += _blocks(msg.get("content"))
    if sum(1 for b in blocks if "cache_control" in b) > 4:
        return "A maximum of 4 blocks with cache_control may be provided"
    if any(b.get("type") == "text" and not b.get("text") for b in blocks):
        return "text content blocks must be non-empty"
    return _check_turns(messages)


def _blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _check_turns(messages: list[dict[str, Any]]) -> str | None:
    pending: set[str] = set()
    for i, msg in enumerate(messages):
        if msg.get("role") != ("user" if i % 2 == 0 else "assistant"):
            return f"messages.{i}: roles must alternate, starting with user"
        blocks = _blocks(msg.get("content"))
        if msg["role"] == "user":
            answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if answered != pending:
                return f"messages.{i}: tool_use ids {sorted(pending)} need exactly one tool_result each"
            pending = set()
        else:
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    return None


class FakeMessagesAPI:
    """The fake server. Entries are answered in order; ``fallback`` answers once the script runs out."""

    def __init__(self, script: Iterable[Entry] = (), *, fallback: Entry | None = None, validate: bool = True) -> None:
        self.script: deque[Entry] = deque(script)
        self.fallback = fallback
        self.validate = validate
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, *entries: Entry) -> None:
        with self._lock:
            self.script.extend(entries)

    def start(self, port: int = 0) -> FakeMessagesAPI:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        # A short poll interval makes close() quick (shutdown waits for the serve loop to notice).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-messages", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    def answer(self, request: Recorded) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            self.requests.append(request)
            entry = self.script.popleft() if self.script else self.fallback
        problem = check_request(request.body) if self.validate else None
        if problem is not None:
            entry = Fail(400, problem)
        elif entry is None:
            entry = Fail(400, "fake Messages API: script exhausted")
        while not isinstance(entry, (dict, Fail)):
            if isinstance(entry, Delay):
                time.sleep(entry.seconds)
                entry = entry.then
            else:
                entry = entry(request.body)
        if isinstance(entry, Fail):
            error = {"type": ERROR_TYPES.get(entry.status, "api_error"), "message": entry.message}
            return entry.status, entry.headers, {"type": "error", "error": error}
        return 200, {}, entry


def _handler(fake: FakeMessagesAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            if self.path.split("?")[0].rstrip("/") != "/v1/messages":
                self._send(404, {}, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})
                return
            self._send(*fake.answer(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)))

        def do_GET(self) -> None:  # only the Messages endpoint exists here
            self._send(404, {}, {"type": "error", "error": {"type": "not_found_error", "message": self.path}})

        def _send(self, status: int, headers: dict[str, str], payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("request-id", f"req_fake_{next(_ids)}")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.send_header("connection", "close")  # no idle keep-alive threads to clean up
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet: tests read fake.requests instead

    return Handler


class ToyResearcher:
    """A scripted 'model' for any number of iterations: read the target, append a comment, finish.

    Each finish's notes are ``toy notes after experiment K``, so a test can see notes fed back.
    """

    def __init__(self, target: str = "train.py") -> None:
        self.target = target
        self.finished = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = body["messages"]
        results = [b for b in _blocks(messages[-1]["content"]) if b.get("type") == "tool_result"]
        if not results:
            return message(tool_use("read_file", {"path": self.target}))
        called = [b["name"] for b in _blocks(messages[-2]["content"]) if b.get("type") == "tool_use"]
        if called[-1] == "read_file":
            content = str(results[-1].get("content", "")).rstrip("\n")
            with self._lock:
                k = self.finished + 1
            new = f"{content}\n# toy experiment {k}\n"
            return message(tool_use("write_file", {"path": self.target, "content": new}))
        with self._lock:
            self.finished += 1
            k = self.finished
        finish = {"description": f"toy experiment {k}", "notes": f"toy notes after experiment {k}"}
        return message(tool_use("finish", finish), tokens=usage(1000, 100, cache_read=500, cache_write=200))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Messages API (a ToyResearcher) on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--target", default="train.py")
    args = parser.parse_args(argv)
    fake = FakeMessagesAPI(fallback=ToyResearcher(args.target)).start(args.port)
    try:  # the print is inside: Ctrl-C right after it must still close the server cleanly
        print(f"ANTHROPIC_BASE_URL={fake.url}", flush=True)  # noqa: T201 (a command-line tool)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.close()


if __name__ == "__main__":
    main()

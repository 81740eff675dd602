"""The ASGI layer in front of every route: the token check (401 without it; a login form for the
page that sets the HttpOnly cookie once) and the security headers (a Content-Security-Policy that
allows no inline script, so even a missed escape could not run one)."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qs, urlsplit

import structlog
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autoresearch.web.access import COOKIE, authorized

log = structlog.get_logger("autoresearch.web")

LOGIN_PATH = "/login"
PUBLIC_PREFIX = "/static/"
MAX_FORM_BYTES = 4096
COOKIE_AGE_S = 30 * 24 * 3600
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                                 b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>autoresearch: sign in</title>
<link rel="stylesheet" href="/static/app.css"></head><body><main class="login">
<h1>autoresearch</h1><p>{message}</p>
<form method="post" action="/login"><label>Token <input type="password" name="token" autocomplete="current-password"
autofocus required></label> <button type="submit">Sign in</button></form></main></body></html>"""


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class Gate:
    """``hosts``: without a token, the Host names a request may carry (the loopback names and the listen
    address), so a web page elsewhere cannot read the dashboard through DNS rebinding (a name of its own
    that resolves to 127.0.0.1). With a token, any Host: the token is the protection."""

    def __init__(self, app: ASGIApp, token: str | None, hosts: frozenset[str] = LOOPBACK_NAMES) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.token is None and _hostname(headers.get("host", "")) not in self.hosts:
            log.info("http.foreign_host", host=headers.get("host", "")[:100])
            await PlainTextResponse("403: unknown Host (a loopback dashboard answers only to its own names)\n",
                                    status_code=403)(scope, receive, secured)
            return
        cookies = _cookies(headers.get("cookie", ""))
        if scope["path"].startswith(PUBLIC_PREFIX):  # the package's own script and style: nothing of the session
            await self.app(scope, receive, secured)
            return
        if scope["path"] == LOGIN_PATH and self.token is not None:
            response = await self._login(scope, receive)
        elif authorized(self.token, headers, cookies):
            await self.app(scope, receive, secured)
            return
        else:
            log.info("http.unauthorized", path=scope["path"], client=(scope.get("client") or ("?",))[0])
            response = self._refuse(scope, headers)
        await response(scope, receive, secured)

    def _refuse(self, scope: Scope, headers: dict[str, str]) -> Response:
        if scope["path"] == "/" and "text/html" in headers.get("accept", ""):
            return HTMLResponse(LOGIN_PAGE.format(message="This dashboard needs its token."), status_code=401)
        return PlainTextResponse("401: send the token (Authorization: Bearer ...) or sign in at /\n",
                                 status_code=401, headers={"www-authenticate": 'Bearer realm="autoresearch"'})

    async def _login(self, scope: Scope, receive: Receive) -> Response:
        """POST /login with the form's token: a correct one sets the cookie and goes to the page."""
        if scope["method"] != "POST":
            return HTMLResponse(LOGIN_PAGE.format(message="Sign in with the dashboard's token."))
        body = await _read_body(receive, MAX_FORM_BYTES)
        given = parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0]
        if self.token is None or not authorized(self.token, {"authorization": f"Bearer {given}"}, {}):
            log.info("http.login_failed", client=(scope.get("client") or ("?",))[0])
            return HTMLResponse(LOGIN_PAGE.format(message="Wrong token."), status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, self.token, max_age=COOKIE_AGE_S, httponly=True, samesite="strict", path="/")
        return response


def _hostname(host: str) -> str | None:
    """The name in a Host header, without the port ("[::1]:8765" -> "::1")."""
    try:
        return urlsplit("//" + host).hostname
    except ValueError:
        return None


def _cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:  # a malformed Cookie header from a client is no cookie, not a server error
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if len(body) > limit or not message.get("more_body"):
            return body[:limit]

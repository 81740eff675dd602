"""The adapter to the Messages API: builds the SDK client, sends one request under the project's retry
policy, and translates the SDK's errors (once, here) into AgentTransient / AgentFatal / AgentError."""

from __future__ import annotations

import email.utils
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import structlog
from anthropic.types import Message

from autoresearch.agents import cancel
from autoresearch.agents.keys import redact
from autoresearch.errors import AgentCancelled, AgentError, AgentFatal, AgentTransient
from autoresearch.ops.config import AnthropicSettings
from autoresearch.ops.retry import retrying

log = structlog.get_logger("autoresearch.agents.anthropic")

DEFAULT_BASE_URL = "https://api.anthropic.com"


def resolve_base_url(settings: AnthropicSettings) -> str | None:
    """The configured base URL, else ANTHROPIC_BASE_URL (for gateways), else None (the SDK's default)."""
    return settings.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None


def build_client(settings: AnthropicSettings, api_key: str, auth_token: str | None = None) -> anthropic.Anthropic:
    """A client with the SDK's own retries off: every retry goes through ``retrying``.

    Credentials are passed in, never left for the SDK to find in the environment (they are gone from it).
    """
    return anthropic.Anthropic(
        api_key=api_key,
        auth_token=auth_token,
        base_url=resolve_base_url(settings),
        max_retries=0,
        timeout=settings.timeout_s,
    )


@dataclass
class MessagesAPI:
    """Sends Messages API requests with retries; raises only autoresearch errors."""

    client: anthropic.Anthropic
    settings: AnthropicSettings
    secrets: tuple[str, ...] = ()
    sleep: Callable[[float], None] | None = None
    stop: threading.Event | None = None
    """Set when the daemon stops: a request in flight or a retry's pause ends with AgentCancelled."""

    @property
    def base_url(self) -> str:
        return str(self.client.base_url)

    def create(self, *, system: list[dict[str, Any]], tools: list[dict[str, Any]], messages: list[Any]) -> Message:
        s = self.settings
        retryer = retrying(
            retry_on=(AgentTransient,),
            abort_on=(AgentFatal, AgentCancelled),
            attempts=s.max_retries + 1,
            initial_s=s.retry_initial_s,
            max_wait_s=s.retry_max_wait_s,
            server_wait=server_wait,
            what="anthropic.messages",
            sleep=cancel.sleeper(self.stop, self.sleep),
        )
        return retryer(lambda: cancel.call(lambda: self._create_once(system, tools, messages), self.stop,
                                           "anthropic-request"))

    def _create_once(self, system: list[dict[str, Any]], tools: list[dict[str, Any]], messages: list[Any]) -> Message:
        s = self.settings
        thinking: Any = {"type": "enabled", "budget_tokens": s.thinking_budget} if s.thinking_budget else anthropic.omit
        try:
            return self.client.messages.create(
                model=s.model,
                max_tokens=s.max_tokens,
                system=system,  # type: ignore[arg-type]  # plain dicts: the SDK's TypedDicts are too narrow
                tools=tools,  # type: ignore[arg-type]
                messages=messages,
                thinking=thinking,
                timeout=s.timeout_s,  # explicit, so the SDK does not demand streaming for large max_tokens
            )
        except anthropic.AnthropicError as exc:
            raise self.translate(exc) from exc

    def translate(self, exc: anthropic.AnthropicError) -> AgentError:
        """One autoresearch error for one SDK error; the message says what to do, never shows the key."""
        model, where = self.settings.model, self.base_url
        if isinstance(exc, anthropic.APIStatusError):
            detail = redact(str(exc.api_message or exc.message), self.secrets)
            return _status_error(exc.status_code, detail, model, where)
        if isinstance(exc, anthropic.APIConnectionError):  # timeouts included
            kind = "timed out" if isinstance(exc, anthropic.APITimeoutError) else "failed"
            return AgentTransient(f"connection to the Anthropic API at {where} {kind}: {exc}")
        if isinstance(exc, anthropic.CredentialsError):
            return AgentFatal(f"Anthropic credentials problem: {redact(str(exc), self.secrets)}")
        return AgentError(f"unexpected Anthropic API error: {redact(str(exc), self.secrets)}")


def _status_error(status: int, detail: str, model: str, where: str) -> AgentError:
    if status == 401:
        return AgentFatal(
            "the Anthropic API rejected the API key (401 unauthorized): the key is wrong or revoked; "
            "check ANTHROPIC_API_KEY, anthropic.api_key_file or the anthropic_api_key credential"
        )
    if status == 403:
        return AgentFatal(f"the API key is not allowed to do this (403 forbidden): {detail}")
    if status == 404:
        return AgentFatal(f"not found (404): check anthropic.model ({model!r}) and the base URL ({where}): {detail}")
    if status == 400:
        return AgentFatal(f"the Anthropic API rejected the request (400 bad request): {detail}")
    if status == 402:
        return AgentFatal(f"the Anthropic account cannot pay for this (402): {detail}")
    if status in (408, 409, 429) or status >= 500:
        what = {429: "rate limited", 529: "overloaded"}.get(status, "temporary failure")
        return AgentTransient(f"Anthropic API {what} ({status}): {detail}")
    return AgentError(f"Anthropic API error {status}: {detail}")


def server_wait(exc: BaseException) -> float | None:
    """The wait a 429/529 response asked for (retry-after-ms, retry-after seconds or HTTP date)."""
    cause = exc.__cause__
    if not isinstance(cause, anthropic.APIStatusError):
        return None
    headers = cause.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None

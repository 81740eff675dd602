"""Agents propose the next version of the target file."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import threading
    from pathlib import Path

    from autoresearch.agents.base import Agent
    from autoresearch.ops.config import Settings


def agent_from_config(settings: Settings, repo: Path, stop: threading.Event | None = None) -> Agent:
    """Build the configured agent; each import is lazy so unused SDKs are never loaded. ``stop``: the
    daemon's stop event; setting it cancels a proposal in progress (``AgentCancelled``)."""
    if settings.agent == "anthropic":
        from autoresearch.agents.anthropic import AnthropicAgent

        return AnthropicAgent.from_config(settings, repo, stop=stop)
    if settings.agent == "command":
        from autoresearch.agents.command import CommandAgent

        return CommandAgent.from_config(settings, repo, stop=stop)
    from autoresearch.agents.offline import OfflineAgent

    return OfflineAgent.from_config(settings, repo)

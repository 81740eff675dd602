"""Token counts and USD cost of Messages API calls, from the per-model price table in config."""

from __future__ import annotations

from typing import Any

from autoresearch.agents.base import Usage
from autoresearch.ops.config import PriceTable

PER_TOKENS = 1_000_000


def find_price(model: str, prices: dict[str, PriceTable]) -> PriceTable | None:
    """The price of ``model``: an exact entry, else the longest entry it starts with.

    Dated model ids (``claude-sonnet-4-5-20250929``) thus use their family's price.
    """
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


def cost_usd(usage: Usage, price: PriceTable | None) -> float:
    if price is None:
        return 0.0
    total = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    )
    return total / PER_TOKENS


def usage_of(api_usage: Any, price: PriceTable | None) -> Usage:
    """Our Usage from the API's: ``input_tokens`` there already excludes cache reads and writes."""
    usage = Usage(
        input_tokens=int(getattr(api_usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(api_usage, "output_tokens", 0) or 0),
        cache_read_tokens=int(getattr(api_usage, "cache_read_input_tokens", 0) or 0),
        cache_write_tokens=int(getattr(api_usage, "cache_creation_input_tokens", 0) or 0),
    )
    usage.cost_usd = cost_usd(usage, price)
    return usage

"""What a call cost, from the provider's reported usage and a price per million tokens.

The rule that matters: when a price or a token count is unknown the cost is ``None``,
never ``0``. A silent zero hides real spend from budgets and reports; ``None`` shows up
as "unknown" and is counted separately.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from .base import Usage

__all__ = ["Price", "builtin_price", "call_cost", "known_models"]

_MILLION = Decimal(1_000_000)
_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Cached-read and cache-write default to the input price."""

    input: Decimal
    output: Decimal
    input_cached: Decimal | None = None
    cache_write: Decimal | None = None
    batch_discount: Decimal = Decimal(0)

    @classmethod
    def from_mapping(cls, data: dict[str, Any], batch_discount: float = 0.0) -> Price:
        def dec(key: str) -> Decimal | None:
            value = data.get(key)
            return None if value is None else Decimal(str(value))

        return cls(
            input=dec("input") or Decimal(0),
            output=dec("output") or Decimal(0),
            input_cached=dec("input_cached"),
            cache_write=dec("cache_write"),
            batch_discount=Decimal(str(data.get("batch_discount", batch_discount))),
        )


@lru_cache(maxsize=1)
def _table() -> dict[str, tuple[str, Price]]:
    text = resources.files("roadworthy.providers").joinpath("data/prices.yaml").read_text()
    raw = yaml.safe_load(text)
    table: dict[str, tuple[str, Price]] = {}
    for vendor, section in raw.items():
        discount = float(section.get("batch_discount", 0))
        for model_id, entry in section["models"].items():
            table[model_id] = (vendor, Price.from_mapping(entry, discount))
    return table


def known_models() -> list[str]:
    return sorted(_table())


def builtin_price(model_id: str) -> Price | None:
    """Price from the bundled table, matching dated snapshots to their base id.

    ``gpt-4o-mini-2024-07-18`` prices as ``gpt-4o-mini``; a ``vendor/`` prefix is ignored.
    """
    table = _table()
    candidate = model_id.split("/", 1)[1] if "/" in model_id else model_id
    for key in (candidate, _DATE_SUFFIX.sub("", candidate)):
        if key in table:
            return table[key][1]
    return None


def call_cost(usage: Usage, price: Price | None, *, batch: bool = False) -> Decimal | None:
    """Cost in USD of one call, or ``None`` when the price or the token counts are unknown."""
    if price is None or usage.input_tokens is None or usage.output_tokens is None:
        return None
    cached = usage.cached_read_tokens
    written = usage.cache_write_tokens
    fresh = max(0, usage.input_tokens - cached - written)
    total = (
        Decimal(fresh) * price.input
        + Decimal(cached) * (price.input_cached if price.input_cached is not None else price.input)
        + Decimal(written) * (price.cache_write if price.cache_write is not None else price.input)
        + Decimal(usage.output_tokens) * price.output
    ) / _MILLION
    if batch:
        total *= Decimal(1) - price.batch_discount
    return total

"""`usage.estimated_cost_usd`: tokens times the model's list price, from prices.json.

The table lives in one place, prices.json, with the date its prices were taken; they are list
prices as of that date and must be checked against OpenAI's pricing page when updated. A model
that is not in the table (a fine-tune, another provider behind OPENAI_BASE_URL) gets no estimate
at all rather than a misleading 0. A dated snapshot (gpt-4o-2024-08-06) is priced as its family.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import orjson

__all__ = ["PRICES_AS_OF", "ModelPrice", "estimated_cost_usd", "price_for"]

_TABLE = Path(__file__).with_name("prices.json")
_SNAPSHOT_RE = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input_per_million: float
    output_per_million: float


@cache
def _table() -> tuple[str, dict[str, ModelPrice]]:
    raw = orjson.loads(_TABLE.read_bytes())
    prices = {
        name: ModelPrice(float(p["input"]), float(p["output"]))
        for name, p in raw["per_million_tokens"].items()
    }
    return str(raw["as_of"]), prices


PRICES_AS_OF = _table()[0]


def price_for(model: str) -> ModelPrice | None:
    prices = _table()[1]
    name = model.strip().lower()
    return prices.get(name) or prices.get(_SNAPSHOT_RE.sub("", name))


def estimated_cost_usd(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The list-price cost of these tokens in dollars, or None when the model's price is unknown."""
    price = price_for(model)
    if price is None:
        return None
    cost = (prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million) / 1e6
    return round(cost, 8)

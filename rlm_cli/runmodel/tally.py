"""Usage and cost as the run model counts them: calls, tokens, and a cost an unknown price poisons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_KEYS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens")


def add_cost(total: float | None, more: float | None) -> float | None:
    """The cost of two things together: unknown (None) when either is. One call of unknown price
    makes the whole sum unknown, so a run is never reported as cheaper than it was."""
    return None if total is None or more is None else total + more


@dataclass
class Tally:
    """Completed calls with their tokens and cost (None: unknown, never 0)."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0

    @classmethod
    def of_call(cls, usage: Mapping[str, Any], cost_usd: float | None, *, failed: bool) -> Tally:
        """One model call's share. A failed call was not billed: no tokens, and it cost 0. A call
        that reports no usage at all (a cache hit) spent nothing either."""
        if failed:
            return cls()
        tokens = {key: int(usage.get(key, 0) or 0) for key in TOKEN_KEYS}
        cost = (float(cost_usd) if cost_usd is not None else None) if usage else 0.0
        return cls(calls=1, cost_usd=cost, **tokens)

    def add(self, other: Tally) -> None:
        self.calls += other.calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cached_input_tokens += other.cached_input_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cost_usd = add_cost(self.cost_usd, other.cost_usd)

    def to_json(self) -> dict[str, Any]:
        """The trajectory's USAGE node."""
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cost_usd": self.cost_usd,
        }


def tally_of(parts: list[Tally]) -> Tally:
    """The sum of `parts`."""
    total = Tally()
    for part in parts:
        total.add(part)
    return total

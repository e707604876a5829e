"""Usage and cost, counted once per model call and rolled up by model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_cli.providers.base import Usage
from rlm_cli.runmodel.tally import add_cost


@dataclass
class ModelTotals:
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0

    def add(self, calls: int, usage: Usage, cost_usd: float | None) -> None:
        self.calls += calls
        self.usage = self.usage + usage
        self.cost_usd = add_cost(self.cost_usd, cost_usd)

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, **self.usage.to_json(), "cost_usd": self.cost_usd}


class UsageLedger:
    """The calls of one run, and (merged in when they end) of its child runs."""

    def __init__(self) -> None:
        self.by_model: dict[str, ModelTotals] = {}
        self.by_depth: dict[int, ModelTotals] = {}
        self.cache_hits = 0  # calls answered from the reply cache: no usage, no cost

    def add(self, model: str, usage: Usage, cost_usd: float | None, depth: int = 0) -> None:
        for totals in (
            self.by_model.setdefault(model, ModelTotals()),
            self.by_depth.setdefault(depth, ModelTotals()),
        ):
            totals.add(1, usage, cost_usd)

    def merge(self, other: UsageLedger) -> None:
        """Roll a child run's totals up into this run's."""
        self.cache_hits += other.cache_hits
        for model, totals in other.by_model.items():
            self.by_model.setdefault(model, ModelTotals()).add(
                totals.calls, totals.usage, totals.cost_usd
            )
        for depth, totals in other.by_depth.items():
            self.by_depth.setdefault(depth, ModelTotals()).add(
                totals.calls, totals.usage, totals.cost_usd
            )

    @property
    def total(self) -> Usage:
        total = Usage()
        for totals in self.by_model.values():
            total = total + totals.usage
        return total

    @property
    def cost_usd(self) -> float | None:
        cost: float | None = 0.0
        for totals in self.by_model.values():
            cost = add_cost(cost, totals.cost_usd)
        return cost

    def to_json(self) -> dict[str, Any]:
        return {
            **self.total.to_json(),
            "cost_usd": self.cost_usd,
            "cache_hits": self.cache_hits,
            "by_model": {model: totals.to_json() for model, totals in self.by_model.items()},
            "by_depth": {str(depth): t.to_json() for depth, t in sorted(self.by_depth.items())},
        }

"""Usage and cost, counted once per model call and rolled up by model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_cli.providers.base import Usage


@dataclass
class ModelTotals:
    calls: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"calls": self.calls, **self.usage.to_json(), "cost_usd": self.cost_usd}


class UsageLedger:
    def __init__(self) -> None:
        self.by_model: dict[str, ModelTotals] = {}

    def add(self, model: str, usage: Usage, cost_usd: float | None) -> None:
        totals = self.by_model.setdefault(model, ModelTotals())
        totals.calls += 1
        totals.usage = totals.usage + usage
        # One call of unknown price makes the model's total unknown: never report it as free.
        totals.cost_usd = (
            None if totals.cost_usd is None or cost_usd is None else totals.cost_usd + cost_usd
        )

    @property
    def total(self) -> Usage:
        total = Usage()
        for totals in self.by_model.values():
            total = total + totals.usage
        return total

    @property
    def cost_usd(self) -> float | None:
        costs = [totals.cost_usd for totals in self.by_model.values()]
        return None if None in costs else sum(c for c in costs if c is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.total.to_json(),
            "cost_usd": self.cost_usd,
            "by_model": {model: totals.to_json() for model, totals in self.by_model.items()},
        }

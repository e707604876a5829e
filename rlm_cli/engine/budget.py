"""Budgets shared by a run and all its child runs: cost, tokens, sub-calls and wall-clock time.

A limit counts as reached a little early for cost and time (a reserve of each is kept back), so the
root can still be asked for its best answer within the budget. Every other limit is reached at
100%. A warning event fires once per limit at 80%.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rlm_cli.events import BudgetWarning, EventBus
from rlm_cli.providers.base import Usage

RESERVE = 0.10
# The last turn needs time for one root call: at least this share of the time budget, up to
# TIME_RESERVE_MAX_S seconds.
TIME_RESERVE_SHARE = 0.30
TIME_RESERVE_MAX_S = 10.0
WARN_AT = 0.80


@dataclass(frozen=True)
class Limits:
    max_cost: float | None = None
    max_tokens: int | None = None
    max_subcalls: int | None = None
    timeout: float | None = None


class Budget:
    def __init__(self, limits: Limits, bus: EventBus) -> None:
        self.limits = limits
        self._bus = bus
        self.owner = ""  # the top run's id, for the warning events
        self.started = time.monotonic()
        self.cost = 0.0
        self.tokens = 0
        self.subcalls = 0
        self.calls = 0  # model calls charged so far
        # Calls sent and not yet charged: each is expected to cost what an average call has, so
        # a fan-out stops before the calls in flight could overrun the budget, not after.
        self.in_flight = 0
        self._warned: set[str] = set()

    # ----- spending -----

    def charge(self, usage: Usage, cost_usd: float | None) -> None:
        """Count a finished model call. Unknown cost counts as nothing: it cannot be budgeted."""
        self.tokens += usage.input_tokens + usage.output_tokens
        self.cost += cost_usd or 0.0
        self.calls += 1
        self.exhausted()  # fires warnings as thresholds pass

    def subcalls_left(self) -> int | None:
        if self.limits.max_subcalls is None:
            return None
        return max(self.limits.max_subcalls - self.subcalls, 0)

    # ----- reading -----

    def used(self) -> dict[str, float]:
        """The share used of each limit that is set (1.0 means reached)."""
        limits, used = self.limits, {}
        pending = self.in_flight / self.calls if self.calls else 0.0  # in average calls
        if limits.max_cost:
            used["max_cost"] = self.cost * (1 + pending) / (limits.max_cost * (1 - RESERVE))
        if limits.max_tokens:
            used["max_tokens"] = self.tokens * (1 + pending) / limits.max_tokens
        if limits.max_subcalls:
            used["max_subcalls"] = self.subcalls / limits.max_subcalls
        if limits.timeout:
            used["timeout"] = self.elapsed() / (limits.timeout - self.time_reserve())
        return used

    def exhausted(self) -> str | None:
        """The name of the first limit reached, if any (also where the 80% warnings fire)."""
        reached = None
        for name, share in self.used().items():
            if share >= WARN_AT and name not in self._warned:
                self._warned.add(name)
                self._bus.emit(
                    BudgetWarning(self.owner, limit=name, used=round(min(share, 1.0), 3))
                )
            if share >= 1.0 and reached is None:
                reached = name
        return reached

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def time_reserve(self) -> float:
        timeout = self.limits.timeout or 0.0
        return max(RESERVE * timeout, min(TIME_RESERVE_MAX_S, TIME_RESERVE_SHARE * timeout))

    def time_left(self, *, reserve: bool = True) -> float | None:
        """Seconds until the time limit (less its reserve, unless asked for the last turn)."""
        if not self.limits.timeout:
            return None
        end = self.limits.timeout - (self.time_reserve() if reserve else 0.0)
        return max(end - self.elapsed(), 0.0)

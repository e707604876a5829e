"""Budgets shared by a run and all its child runs: cost, tokens, sub-calls and wall-clock time.

A limit counts as reached a little early for cost and time (a reserve of each is kept back), so the
root can still be asked for its best answer within the budget. Every other limit is reached at
100%. A warning event fires once per limit at 80%.

Money and tokens are spent on facts, never on guesses. A sub-call is admitted (`admit`) only
when what has been spent, plus what the calls in flight can cost at most, plus what this call can
cost at most (its `Bound`) fits the cap; its bound is held until the call is over (`settle`), when
what it really spent replaces it. A call that would fit once the calls in flight are settled waits
for them; a call that cannot fit even then is refused, before anything is sent.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rlm_cli.errors import LimitName
from rlm_cli.events import BudgetWarning, EventBus
from rlm_cli.providers.base import Completion, Usage

if TYPE_CHECKING:
    from rlm_cli.engine.usage import UsageLedger

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


@dataclass(frozen=True)
class Bound:
    """The most one call can spend: its prompt's tokens plus its max output tokens, and those at
    the model's prices (`cost` is None when the price is not known: it cannot be budgeted)."""

    cost: float | None
    tokens: int


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
        # The bounds of the calls admitted and not yet settled (the calls in flight).
        self.held_cost = 0.0
        self.held_tokens = 0
        self.holding = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._warned: set[LimitName] = set()

    # ----- spending -----

    def charge(self, usage: Usage, cost_usd: float | None) -> None:
        """Count a finished model call. Unknown cost counts as nothing: it cannot be budgeted."""
        self.tokens += usage.input_tokens + usage.output_tokens
        self.cost += cost_usd or 0.0
        self.calls += 1
        self.exhausted()  # fires warnings as thresholds pass

    def record(
        self, ledger: UsageLedger, depth: int, completion: Completion, bound: Bound | None = None
    ) -> None:
        """Account for one model call that returned, root call or sub-call, in one step: in the
        ledger of the run that made it, and in this budget (releasing the sub-call's `bound`,
        if it was admitted on one). A cache hit spent nothing: it is counted as a hit only."""
        if completion.cached:
            ledger.cache_hits += 1
            if bound is not None:
                self.settle(bound)
            return
        ledger.add(completion.model, completion.usage, completion.cost_usd, depth)
        if bound is None:
            self.charge(completion.usage, completion.cost_usd)
        else:
            self.settle(bound, completion.usage, completion.cost_usd)

    def subcalls_left(self) -> int | None:
        if self.limits.max_subcalls is None:
            return None
        return max(self.limits.max_subcalls - self.subcalls, 0)

    async def admit(self, bound: Bound) -> LimitName | None:
        """Hold `bound` for a call about to be sent, once it fits; None when admitted. Otherwise
        the name of the limit that refuses it: one already reached, or a money or token budget
        that cannot cover it even when every call in flight is settled. Nothing is held then."""
        while True:
            # Sub-calls are counted against --max-subcalls when asked for, whole, so a call of a
            # request that was let through is within that limit even when it is now reached.
            reached = next((n for n in self.reached() if n != "max_subcalls"), None)
            if reached is not None:
                return reached
            over = self.passes(bound, with_held=True)
            if over is None:
                self.held_cost += bound.cost or 0.0
                self.held_tokens += bound.tokens
                self.holding += 1
                return None
            # The calls in flight can only add to the spend: if the call does not fit without
            # them, it never will. If it does, wait for them: they may spend less than their
            # bound, and a refused call would be work lost while the budget still had room.
            if not self.holding or self.passes(bound, with_held=False) is not None:
                return over
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:  # cancelled: its cell is over
                    self._waiters.remove(waiter)

    def settle(
        self, bound: Bound, usage: Usage | None = None, cost_usd: float | None = None
    ) -> None:
        """An admitted call is over: release its bound and charge what it spent (`usage`, None if
        it failed), in one step, so no waiting call can see the room before the spend."""
        self.holding -= 1
        self.held_cost -= bound.cost or 0.0
        self.held_tokens -= bound.tokens
        if not self.holding:  # no float drift left over
            self.held_cost, self.held_tokens = 0.0, 0
        if usage is not None:
            self.charge(usage, cost_usd)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ----- reading -----

    def cost_cap(self) -> float | None:
        """What sub-calls and root turns may spend before the last turn: the cap less its reserve."""
        return self.limits.max_cost * (1 - RESERVE) if self.limits.max_cost else None

    def passes(self, bound: Bound, *, with_held: bool) -> LimitName | None:
        """The money or token budget that spending `bound` on top of what is spent (and what the
        calls in flight hold, `with_held`) would pass, if any."""
        cap = self.cost_cap()
        held_cost = self.held_cost if with_held else 0.0
        if cap is not None and bound.cost is not None and self.cost + held_cost + bound.cost > cap:
            return "max_cost"
        held_tokens = self.held_tokens if with_held else 0
        limit = self.limits.max_tokens
        if limit and self.tokens + held_tokens + bound.tokens > limit:
            return "max_tokens"
        return None

    def used(self) -> dict[LimitName, float]:
        """The share spent of each limit that is set (1.0 means reached). Only what is spent
        counts: the calls in flight are held against the money and token limits by `admit`."""
        limits = self.limits
        used: dict[LimitName, float] = {}
        cost_cap = self.cost_cap()
        if cost_cap:
            used["max_cost"] = self.cost / cost_cap
        if limits.max_tokens:
            used["max_tokens"] = self.tokens / limits.max_tokens
        if limits.max_subcalls:
            used["max_subcalls"] = self.subcalls / limits.max_subcalls
        if limits.timeout:
            used["timeout"] = self.elapsed() / (limits.timeout - self.time_reserve())
        return used

    def exhausted(self) -> LimitName | None:
        """The name of the first limit reached, if any (also where the 80% warnings fire).
        It is the status of a run that a limit stopped, and the name its feedback gives."""
        return next(iter(self.reached()), None)

    def reached(self) -> list[LimitName]:
        """The names of the limits reached, in `used()` order; fires the 80% warnings."""
        reached = []
        for name, share in self.used().items():
            if share >= WARN_AT and name not in self._warned:
                self._warned.add(name)
                self._bus.emit(
                    BudgetWarning(self.owner, limit=name, used=round(min(share, 1.0), 3))
                )
            if share >= 1.0:
                reached.append(name)
        return reached

    def left(self, limit: LimitName) -> float:
        """What is left of a money or token budget for sub-calls (the cost less its reserve)."""
        if limit == "max_cost":
            return max((self.cost_cap() or 0.0) - self.cost - self.held_cost, 0.0)
        return max((self.limits.max_tokens or 0) - self.tokens - self.held_tokens, 0)

    def remaining(self) -> dict[str, str]:
        """What is left of each limit that is set, as the root's feedback shows it, by name
        (`{"max_cost": "$1.2040 of $2.00"}`; money and time net of the last turn's reserve)."""
        limits, left = self.limits, {}
        cost_cap = self.cost_cap()
        if limits.max_cost and cost_cap is not None:
            left["max_cost"] = f"${max(cost_cap - self.cost, 0):.4f} of ${limits.max_cost:g}"
        if limits.max_tokens:
            tokens = max(limits.max_tokens - self.tokens, 0)
            left["max_tokens"] = f"{tokens:,} of {limits.max_tokens:,} tokens"
        if limits.max_subcalls:
            calls = max(limits.max_subcalls - self.subcalls, 0)
            left["max_subcalls"] = f"{calls:,} of {limits.max_subcalls:,} sub-calls"
        seconds = self.time_left()
        if limits.timeout and seconds is not None:
            left["timeout"] = f"{seconds:,.0f} of {limits.timeout:g} s"
        return left

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

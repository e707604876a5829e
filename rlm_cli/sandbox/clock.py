"""A cell's own time: the clock `--cell-timeout` bounds, paused while the cell waits on sub-calls.

A fan-out the method recommends (hundreds of chunks at tens of seconds a call) must not be cut by
a limit meant for runaway code; the run's `--timeout` and the budgets bound the waiting instead.
"""

from __future__ import annotations

import asyncio
import time


class CellClock:
    """Counts the seconds a cell runs with none of its sub-calls in flight."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._used = 0.0
        self._since: float | None = time.monotonic()  # None while paused
        self._waits = 0
        self._waited = 0.0
        self._paused_at = 0.0
        self.changed = asyncio.Event()  # set when the clock pauses or runs again

    def hold(self) -> None:
        """A sub-call of the cell is in flight: the clock stops until every one is back."""
        if self._waits == 0 and self._since is not None:
            self._paused_at = time.monotonic()
            self._used += self._paused_at - self._since
            self._since = None
            self.changed.set()
        self._waits += 1

    def release(self) -> None:
        self._waits -= 1
        if self._waits == 0:
            self._since = time.monotonic()
            self._waited += self._since - self._paused_at
            self.changed.set()

    @property
    def waiting(self) -> bool:
        return self._waits > 0

    def waited(self) -> float:
        """Seconds the cell has spent waiting on its sub-calls."""
        paused = time.monotonic() - self._paused_at if self._since is None else 0.0
        return self._waited + paused

    def left(self) -> float | None:
        """Seconds of the cell's own time left, or None while it waits on sub-calls."""
        if self._since is None:
            return None
        return self.limit - self._used - (time.monotonic() - self._since)

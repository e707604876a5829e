"""Retries with exponential backoff and full jitter, honouring the server's Retry-After."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from rlm_cli.errors import ProviderError, RetryableError
from rlm_cli.providers.base import RetryCallback

T = TypeVar("T")

BASE_DELAY_S = 0.5
MAX_DELAY_S = 30.0
# A Retry-After longer than this is not waited for: the call fails and says so.
MAX_RETRY_AFTER_S = 120.0


def backoff_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before attempt `attempt + 1`."""
    if retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_S:
        return retry_after
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1)))


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    attempts: int,
    what: str,
    on_retry: RetryCallback | None = None,
) -> T:
    """Run `call` until it succeeds, a non-retryable error occurs, or `attempts` are used."""
    attempt = 1
    while True:
        try:
            return await call()
        except RetryableError as exc:
            if attempt >= attempts:
                raise ProviderError(f"{what} failed after {attempts} attempt(s): {exc}") from exc
            delay = backoff_delay(attempt, exc.retry_after)
            if on_retry is not None:
                on_retry(attempt, delay, exc)
            await asyncio.sleep(delay)
            attempt += 1

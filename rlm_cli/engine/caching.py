"""The reply cache as a provider: `CachingProvider(provider, store)` answers a request it has
seen from the store and sends the rest, for root calls and sub-calls alike.

The key is the wrapped provider's own `cache_identity()` (its name, the endpoint it really sends
to, the settings it applies to every request) plus the request, so two servers, or a root and a
worker on different endpoints, can never share a reply. A hit is marked `cached`: it made no
request and spends nothing (`Budget.record` counts it as a hit, not as usage).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

from rlm_cli.providers.base import Completion, ModelRequest, Provider, TextCallback


class ReplyStore(Protocol):
    """Where replies are kept (rlm_cli.engine.cache.ReplyCache)."""

    def key(self, provider: str, request: ModelRequest, extra: dict[str, Any]) -> str: ...

    def get(self, key: str) -> Completion | None: ...

    def put(self, key: str, completion: Completion) -> None: ...


class CachingProvider:
    cacheable: ClassVar[bool] = True
    needs_key: ClassVar[bool] = False  # the wrapped provider holds the key, if it needs one

    def __init__(self, provider: Provider, store: ReplyStore) -> None:
        self.inner = provider
        self.name = provider.name
        self._store = store

    def cache_identity(self) -> dict[str, Any]:
        return self.inner.cache_identity()

    def _key(self, request: ModelRequest) -> str:
        # Asked each time, not kept: it is a handful of fields, and it can never go stale.
        return self._store.key(self.name, request, self.inner.cache_identity())

    def _hit(self, key: str) -> Completion | None:
        hit = self._store.get(key)
        return None if hit is None else dataclasses.replace(hit, cached=True, cost_usd=0.0)

    def _keep(self, key: str, completion: Completion) -> Completion:
        if completion.finish_reason != "length":  # a reply cut at its output cap is not kept
            self._store.put(key, completion)
        return completion

    async def complete(self, request: ModelRequest) -> Completion:
        key = self._key(request)
        hit = self._hit(key)
        if hit is not None:
            return hit
        return self._keep(key, await self.inner.complete(request))

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        key = self._key(request)
        hit = self._hit(key)
        if hit is not None:
            on_text(hit.text)
            return hit
        return self._keep(key, await self.inner.stream(request, on_text))

    async def aclose(self) -> None:
        await self.inner.aclose()


def caching(provider: Provider, store: ReplyStore | None) -> Provider:
    """`provider` behind the store, when there is one and its replies may be replayed."""
    if store is None or not provider.cacheable:
        return provider
    return CachingProvider(provider, store)

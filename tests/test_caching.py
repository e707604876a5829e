"""The reply cache as a provider decorator: keyed from the wrapped provider's own connection,
the same for root calls and sub-calls, and a hit spends nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

from rlm_cli.engine.budget import Budget, Limits
from rlm_cli.engine.cache import ReplyCache
from rlm_cli.engine.caching import CachingProvider, caching
from rlm_cli.engine.usage import UsageLedger
from rlm_cli.events import EventBus
from rlm_cli.providers.base import Completion, Message, ModelRequest, TextCallback, Usage
from rlm_cli.providers.scripted import ScriptedProvider


class Server:
    """A provider on one endpoint: answers with its own URL, and counts the requests it got."""

    name = "openai"
    cacheable: ClassVar[bool] = True
    needs_key: ClassVar[bool] = True

    def __init__(self, url: str, finish_reason: str = "stop") -> None:
        self.url = url
        self.finish_reason = finish_reason
        self.requests = 0

    def cache_identity(self) -> dict[str, Any]:
        return {"provider": self.name, "base_url": self.url, "temperature": None}

    async def complete(self, request: ModelRequest) -> Completion:
        self.requests += 1
        return Completion(
            f"from {self.url}", request.model, Usage(100, 10), self.finish_reason, cost_usd=0.25
        )

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        completion = await self.complete(request)
        on_text(completion.text)
        return completion

    async def aclose(self) -> None:
        pass


def request(purpose: Any = "root") -> ModelRequest:
    return ModelRequest("m", (Message("user", "what is the code?"),), purpose)


def test_two_endpoints_never_share_a_reply_and_a_hit_makes_no_request(tmp_path: Path) -> None:
    store = ReplyCache(tmp_path / "replies.sqlite3")
    a, b = Server("http://a/v1"), Server("http://b/v1")
    cached_a, cached_b = CachingProvider(a, store), CachingProvider(b, store)

    async def ask() -> list[Completion]:
        return [
            await cached_a.complete(request()),
            await cached_b.stream(request(), lambda _: None),
            await cached_a.stream(request("sub"), lambda _: None),  # root or sub: one reply
            await cached_b.complete(request()),
        ]

    first_a, first_b, again_a, again_b = asyncio.run(ask())
    assert (first_a.text, first_b.text) == ("from http://a/v1", "from http://b/v1")
    assert not first_a.cached and not first_b.cached
    assert again_a.cached and again_a.text == "from http://a/v1" and again_a.cost_usd == 0.0
    assert again_b.cached and again_b.text == "from http://b/v1"
    assert (a.requests, b.requests) == (1, 1)


def test_a_reply_cut_at_its_output_cap_is_not_kept(tmp_path: Path) -> None:
    server = Server("http://a/v1", finish_reason="length")
    provider = CachingProvider(server, ReplyCache(tmp_path / "replies.sqlite3"))
    shown: list[str] = []
    for _ in range(2):
        completion = asyncio.run(provider.stream(request(), shown.append))
        assert not completion.cached
    assert server.requests == 2 and shown == ["from http://a/v1"] * 2


def test_the_scripted_provider_is_never_wrapped(tmp_path: Path) -> None:
    store = ReplyCache(tmp_path / "replies.sqlite3")
    scripted = ScriptedProvider(["FINAL('x')"], [])
    assert caching(scripted, store) is scripted
    server = Server("http://a/v1")
    assert caching(server, None) is server
    assert isinstance(caching(server, store), CachingProvider)


def test_a_hit_is_counted_as_a_hit_and_charges_no_budget() -> None:
    budget = Budget(Limits(max_cost=1.0, max_tokens=1_000), EventBus())
    ledger = UsageLedger()
    paid = Completion("x", "m", Usage(100, 10), cost_usd=0.25)
    budget.record(ledger, 0, paid)
    budget.record(ledger, 0, Completion("x", "m", Usage(100, 10), cost_usd=0.0, cached=True))
    assert (budget.tokens, budget.cost, budget.calls) == (110, 0.25, 1)
    assert ledger.cache_hits == 1 and ledger.to_json()["input_tokens"] == 100

"""The sub-call router: every llm_query of a run goes through here, concurrently and bounded."""

from __future__ import annotations

import asyncio
import itertools
import time

from rlm_cli.engine.usage import UsageLedger
from rlm_cli.errors import ContextLengthError, ProviderAuthError, RlmError
from rlm_cli.events import EventBus, Retry, SubcallFinished, SubcallStarted
from rlm_cli.providers.base import Message, ModelRequest, Provider, RetryCallback
from rlm_cli.providers.catalog import Catalog
from rlm_cli.sandbox.host import QueryRequest


class SubcallRouter:
    def __init__(
        self,
        *,
        run_id: str,
        provider: Provider,
        model: str,
        catalog: Catalog,
        max_concurrency: int,
        bus: EventBus,
        ledger: UsageLedger,
    ) -> None:
        self._run_id = run_id
        self._provider = provider
        self._model = model
        self._catalog = catalog
        self._limit = asyncio.Semaphore(max_concurrency)
        self._bus = bus
        self._ledger = ledger
        self._ids = itertools.count(1)
        self._batch_ids = itertools.count(1)
        self.count = 0
        # An error that must end the run (bad credentials): the code got an error string, and the
        # engine raises this once the cell is over.
        self.fatal: RlmError | None = None

    async def handle(self, request: QueryRequest) -> list[str]:
        """Answer one llm_query / llm_query_batched call; replies keep the order of the prompts."""
        model = request.model or self._model
        batch_id = next(self._batch_ids) if request.batched else None
        calls = [
            self._one(prompt, model, request.cell, batch_id, len(request.prompts))
            for prompt in request.prompts
        ]
        return list(await asyncio.gather(*calls))

    async def _one(
        self, prompt: str, model: str, cell: int, batch_id: int | None, batch_size: int
    ) -> str:
        subcall_id = next(self._ids)
        async with self._limit:
            self.count += 1
            self._bus.emit(
                SubcallStarted(
                    self._run_id,
                    subcall_id=subcall_id,
                    cell=cell,
                    model=model,
                    prompt=prompt,
                    batch_id=batch_id,
                    batch_size=batch_size,
                )
            )
            started = time.monotonic()
            request = ModelRequest(
                model=model,
                messages=(Message("user", prompt),),
                purpose="sub",
                on_retry=retry_reporter(self._bus, self._run_id, "sub", model),
            )
            try:
                too_big = self._refusal(prompt, model)
                if too_big:
                    raise ContextLengthError(too_big)
                completion = await self._provider.complete(request)
            except (RlmError, asyncio.CancelledError) as exc:
                if isinstance(exc, ProviderAuthError) and self.fatal is None:
                    self.fatal = exc
                cancelled = isinstance(exc, asyncio.CancelledError)
                error = "cancelled: its cell was over" if cancelled else str(exc)
                self._bus.emit(
                    SubcallFinished(
                        self._run_id,
                        subcall_id=subcall_id,
                        cell=cell,
                        model=model,
                        reply="",
                        usage={},
                        elapsed_s=time.monotonic() - started,
                        error=error,
                        batch_id=batch_id,
                    )
                )
                if cancelled:
                    raise
                return f"Error: llm_query failed: {error}"
        self._ledger.add(completion.model, completion.usage, completion.cost_usd)
        self._bus.emit(
            SubcallFinished(
                self._run_id,
                subcall_id=subcall_id,
                cell=cell,
                model=completion.model,
                reply=completion.text,
                usage=completion.usage.to_json(),
                elapsed_s=time.monotonic() - started,
                batch_id=batch_id,
                cost_usd=completion.cost_usd,
            )
        )
        return completion.text

    def _refusal(self, prompt: str, model: str) -> str | None:
        """Why a prompt cannot fit the worker's window, checked before anything is spent."""
        facts = self._catalog.facts(model)
        if not facts.known or len(prompt) <= facts.prompt_chars:
            return None
        return (
            f"the prompt has {len(prompt):,} characters but {model} takes about "
            f"{facts.prompt_chars:,} (a {facts.window:,}-token window); nothing was sent. "
            "Split the text into smaller chunks."
        )


def retry_reporter(bus: EventBus, run_id: str, purpose: str, model: str) -> RetryCallback:
    """A callback for providers that turns each retry into a `retry` event."""

    def report(attempt: int, delay: float, reason: str) -> None:
        bus.emit(
            Retry(
                run_id, purpose=purpose, model=model, attempt=attempt, delay_s=delay, reason=reason
            )
        )

    return report

"""The sub-call router: every llm_query of a run and of its child runs goes through here.

Concurrency is bounded per provider, and adapts: a 429 halves the provider's limit, and each
success wins a little of it back. Budgets are checked before anything is sent; a batch that would
overrun --max-subcalls fails in the cell, whole, before spending. Money and token budgets admit a
batch call by call (`Budget.admit`, on each call's `Bound`): the calls that cannot fit are refused
before they are sent, their slots get an error string naming the budget, and the root is told how
many (`Caller.notes`). Replies may come from the cache.

Every sub-call that ends with an error string instead of a reply is counted in its run's
`Caller.failures`, by kind (`failure_kind`), so no view or exit code can miss it.

With `redact_secrets`, obvious secrets in each prompt are masked (engine/redact.py) before
anything else sees it: the provider, the cache key, the size check and the `subcall_started`
event (so the trace) all get the masked text. An rlm_query child's question is masked the same
way; the context value handed to a child is not (it is the child's input, and what the child
sends of it goes through here). Root-model messages are never masked.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rlm_cli.engine.budget import Bound, Budget
from rlm_cli.engine.prompts import refused_note
from rlm_cli.engine.redact import redact
from rlm_cli.engine.usage import UsageLedger
from rlm_cli.errors import (
    ContextLengthError,
    LimitName,
    ProviderAuthError,
    ProviderError,
    RequestTimeout,
    RetryableError,
    RlmError,
)
from rlm_cli.events import EventBus, Retry, SubcallCached, SubcallFinished, SubcallStarted
from rlm_cli.inputs import CHARS_PER_TOKEN
from rlm_cli.providers.base import (
    Completion,
    Message,
    ModelRequest,
    Provider,
    RetryCallback,
    Usage,
)
from rlm_cli.providers.catalog import Catalog
from rlm_cli.sandbox.host import QueryRefused, QueryRequest, QueryStopped
from rlm_cli.sandbox.notes import call_failed

ChildStarter = Callable[[str, Any, str | None, int], Awaitable[str]]

# Tokens a chat request adds around a prompt (role, framing): part of a call's input bound.
MESSAGE_TOKENS = 16


class BudgetRefused(RlmError):
    """A sub-call refused before it was sent: the budget `limit` cannot cover it."""

    def __init__(self, message: str, limit: LimitName) -> None:
        super().__init__(message)
        self.limit = limit


def failure_kind(error: BaseException) -> str:
    """How a failed sub-call failed, for RunResult.failures: budget, provider, context_length,
    timeout or other."""
    if isinstance(error, BudgetRefused):
        return "budget"
    if isinstance(error, ContextLengthError):
        return "context_length"
    if isinstance(error, asyncio.CancelledError | TimeoutError):
        return "timeout"  # its cell was over: stopped at its time limit, mostly
    if isinstance(error, RequestTimeout) or isinstance(error.__cause__, RequestTimeout):
        return "timeout"  # the request itself timed out (the cause: after its retries)
    if isinstance(error, ProviderError | ProviderAuthError):
        return "provider"
    return "other"


@dataclass
class Caller:
    """The run a request comes from: its usage is counted there, its events carry its id."""

    run_id: str
    depth: int
    ledger: UsageLedger
    # Starts a child RLM (question, context or None, model or None, cell) and returns its answer;
    # None when this run is at the depth limit, where rlm_query becomes a plain llm_query.
    start_child: ChildStarter | None
    started: int = 0  # sub-calls this run has sent (or had answered from the cache)
    redacted: int = 0  # secrets masked in this run's own prompts (not its children's)
    # Sub-calls of this run and its child runs that ended with an error string, by kind.
    failures: Counter[str] = field(default_factory=Counter)
    # The first budget that refused work of this run or its child runs: the run's status then.
    cut_by: LimitName | None = None
    # What the root must be told after the cell: budgets that refused part of a fan-out.
    notes: list[str] = field(default_factory=list)

    def failed(self, kind: str, limit: LimitName | None = None) -> None:
        self.failures[kind] += 1
        if limit is not None:
            self.cut(limit)

    def cut(self, limit: LimitName) -> None:
        if self.cut_by is None:
            self.cut_by = limit


@dataclass
class Fanout:
    """One llm_query / llm_query_batched call, for the note when a budget refused part of it."""

    size: int
    refused: Counter[LimitName] = field(default_factory=Counter)  # by the limit that refused them
    bound_cost: float | None = 0.0  # the whole fan-out at most; None when a price is unknown
    bound_tokens: int = 0
    sent: int = 0  # calls that spent (cache hits and failures do not)
    spent_cost: float = 0.0
    spent_tokens: int = 0

    def add(self, bound: Bound) -> None:
        self.bound_tokens += bound.tokens
        if self.bound_cost is not None:
            self.bound_cost = None if bound.cost is None else self.bound_cost + bound.cost

    def spent(self, usage: Usage, cost_usd: float | None) -> None:
        self.sent += 1
        self.spent_cost += cost_usd or 0.0
        self.spent_tokens += usage.input_tokens + usage.output_tokens


class AdaptiveLimit:
    """A concurrency limit that halves on rate limiting and grows back by one per `limit`
    successes (additive increase, multiplicative decrease)."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self._in_flight = 0
        self._successes = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            try:
                await self._changed.wait_for(lambda: self._in_flight < self.limit)
            except asyncio.CancelledError:
                # This waiter may have been the one woken for a free slot: pass the wake-up on.
                self._changed.notify(max(self.limit - self._in_flight, 0))
                raise
            self._in_flight += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._changed:
            self._in_flight -= 1
            # Wake only as many waiters as there are free slots: waking all of them on every
            # release would cost O(waiters) each time, O(n^2) for a large fan-out.
            self._changed.notify(max(self.limit - self._in_flight, 0))

    def rate_limited(self) -> None:
        self.limit = max(self.limit // 2, 1)
        self._successes = 0

    def succeeded(self) -> None:
        if self.limit >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self.limit += 1
            self._successes = 0


class SubcallRouter:
    def __init__(
        self,
        *,
        provider: Provider,
        model: str,
        catalog: Catalog,
        max_concurrency: int,
        bus: EventBus,
        budget: Budget,
        on_fatal: Callable[[RlmError], None],
        redact_secrets: bool = False,
        max_output_tokens: int | None = None,
        free: bool = False,
    ) -> None:
        self._provider = provider
        # What a sub-call can cost at most (`_bound`): the most output tokens a request asks
        # for (None: the model's own maximum), and whether the provider charges at all (local).
        self._max_output_tokens = max_output_tokens
        self._free = free
        self._model = model
        self._catalog = catalog
        self._limits: dict[str, AdaptiveLimit] = {}
        self._max_concurrency = max_concurrency
        self._bus = bus
        self.budget = budget
        self._ids = itertools.count(1)
        self._batch_ids = itertools.count(1)
        # Told of an error that must end the whole tree (bad credentials): the code got an error
        # string, and the engine raises it once the cell is over.
        self._on_fatal = on_fatal
        self.redact_secrets = redact_secrets
        # Secrets masked so far in the whole tree's prompts, by kind (`aws-access-key`: 2).
        self.redacted_by_kind: Counter[str] = Counter()

    @property
    def redacted(self) -> int:
        """Secrets masked so far in the whole tree's sub-call prompts and child questions."""
        return self.redacted_by_kind.total()

    def _masked(self, caller: Caller, text: str) -> str:
        """`text` as it may be sent: with its secrets masked when `redact_secrets` is on."""
        if not self.redact_secrets:
            return text
        text, counts = redact(text)
        if counts:
            self.redacted_by_kind.update(counts)
            caller.redacted += counts.total()
        return text

    def limit(self, provider: str) -> AdaptiveLimit:
        """The concurrency limit of one provider, shared by every run of the tree."""
        if provider not in self._limits:
            self._limits[provider] = AdaptiveLimit(self._max_concurrency)
        return self._limits[provider]

    async def handle(self, caller: Caller, request: QueryRequest) -> list[str]:
        """Answer one llm_query / llm_query_batched / rlm_query call, replies in prompt order."""
        self._refuse_if_over_budget(caller, len(request.prompts))
        replies: list[str | None] = [None] * len(request.prompts)
        if request.kind == "rlm" and caller.start_child is not None:
            start = caller.start_child
            contexts = request.contexts or [None] * len(request.prompts)

            async def child(index: int, question: str, context: Any) -> None:
                masked = self._masked(caller, question)
                replies[index] = await start(masked, context, request.model, request.cell)

            jobs = zip(request.prompts, contexts, strict=True)
            await _keeping(replies, *(child(i, q, c) for i, (q, c) in enumerate(jobs)))
            return _all(replies)
        kind = "rlm_fallback" if request.kind == "rlm" else "llm"
        prompts = request.prompts
        if request.kind == "rlm" and request.contexts:
            prompts = [_with_context(q, c) for q, c in zip(prompts, request.contexts, strict=True)]
        model = request.model or self._model
        batch_id = next(self._batch_ids) if request.batched else None
        self.budget.subcalls += len(prompts)
        queue = iter(enumerate(prompts))
        fanout = Fanout(len(prompts))

        async def lane() -> None:
            # Lanes take the next prompt as they free up: memory stays flat however many
            # prompts a batch has, where a task per prompt would grow with it. (Masking here,
            # one prompt at a time, keeps it flat too.)
            for index, prompt in queue:
                masked = self._masked(caller, prompt)
                replies[index] = await self._one(
                    caller, masked, model, request.cell, batch_id, fanout, kind
                )

        lanes = (lane() for _ in range(min(len(prompts), self._max_concurrency)))
        try:
            await _keeping(replies, *lanes)
        finally:
            if fanout.refused:
                caller.notes.append(self._refused_note(fanout))
        return _all(replies)

    def _refused_note(self, fanout: Fanout) -> str:
        """What the root is told about a fan-out a budget cut: how many were refused, and what
        the whole of it would have cost (at the cost of the calls sent, and at most)."""
        limit, _ = fanout.refused.most_common(1)[0]
        spent: float
        bound: float | None
        if limit == "max_cost":
            spent, bound, unit = fanout.spent_cost, fanout.bound_cost, "${:.4f}"
        else:
            spent, bound, unit = fanout.spent_tokens, fanout.bound_tokens, "{:,.0f} tokens"

        def show(value: float | None) -> str:
            return "unknown" if value is None else unit.format(value)

        about = spent / fanout.sent * fanout.size if fanout.sent else None
        whole, most, left = show(about), show(bound), show(self.budget.left(limit))
        return refused_note(
            refused=fanout.refused.total(), size=fanout.size, limit=limit,
            whole=whole, most=most, left=left,
        )  # fmt: skip

    def _refuse_if_over_budget(self, caller: Caller, count: int) -> None:
        reached = self.budget.exhausted()
        if reached is not None:
            caller.cut(reached)
            raise QueryRefused(
                f"the {reached} budget is used up, so no more sub-calls can be made; "
                "answer now with what you have, using FINAL(...) or FINAL_VAR(...)"
            )
        left = self.budget.subcalls_left()
        if left is not None and count > left:
            caller.cut("max_subcalls")
            raise QueryRefused(
                f"{count} sub-call(s) would overrun --max-subcalls {self.budget.limits.max_subcalls} "
                f"({left} left); nothing was sent. Use fewer, larger chunks."
            )

    async def _one(
        self,
        caller: Caller,
        prompt: str,
        model: str,
        cell: int,
        batch_id: int | None,
        fanout: Fanout,
        kind: str,
    ) -> str:
        subcall_id = next(self._ids)
        request = ModelRequest(
            model=model,
            messages=(Message("user", prompt),),
            purpose="sub",
            on_retry=self._retry_reporter(caller.run_id, model),
        )
        async with self.limit(self._provider.name):
            caller.started += 1
            self._bus.emit(
                SubcallStarted(
                    caller.run_id,
                    subcall_id=subcall_id,
                    cell=cell,
                    model=model,
                    prompt=prompt,
                    batch_id=batch_id,
                    batch_size=fanout.size,
                    kind=kind,
                )
            )
            started = time.monotonic()
            try:
                completion = await self._send(caller, request, prompt, model, fanout)
            except (RlmError, asyncio.CancelledError) as exc:
                if isinstance(exc, BudgetRefused):
                    fanout.refused[exc.limit] += 1
                return self._failed(caller, exc, subcall_id, cell, model, started, batch_id)
        cached = completion.cached
        if cached:  # a hit spent nothing: no usage is reported for it, and it costs 0
            self._bus.emit(SubcallCached(caller.run_id, subcall_id=subcall_id))
        else:
            self.limit(self._provider.name).succeeded()
        self._bus.emit(
            SubcallFinished(
                caller.run_id,
                subcall_id=subcall_id,
                cell=cell,
                model=completion.model,
                reply=completion.text,
                usage={} if cached else completion.usage.to_json(),
                elapsed_s=time.monotonic() - started,
                batch_id=batch_id,
                cost_usd=0.0 if cached else completion.cost_usd,
            )
        )
        return completion.text

    async def _send(
        self, caller: Caller, request: ModelRequest, prompt: str, model: str, fanout: Fanout
    ) -> Completion:
        too_big = self._refusal(prompt, model)
        if too_big:
            raise ContextLengthError(too_big)
        bound = self._bound(prompt, model)
        fanout.add(bound)
        refused = await self.budget.admit(bound)
        if refused is not None:
            raise BudgetRefused(self._refused_reason(refused, bound), refused)
        try:
            completion = await self._provider.complete(request)
        except BaseException:
            self.budget.settle(bound)  # a failed attempt reports no usage: nothing was spent
            raise
        # Charged before anything else can run, with the bound released in the same step.
        self.budget.record(caller.ledger, caller.depth, completion, bound)
        if not completion.cached:
            fanout.spent(completion.usage, completion.cost_usd)
        return completion

    def _bound(self, prompt: str, model: str) -> Bound:
        """The most one sub-call can spend, from the catalog's facts: the prompt's tokens (four
        characters a token, as everywhere here, plus the message framing) at the input price,
        and the most output tokens it may return at the output price."""
        facts = self._catalog.facts(model)
        prompt_tokens = -(-len(prompt) // CHARS_PER_TOKEN) + MESSAGE_TOKENS
        output = self._max_output_tokens or facts.max_output
        if facts.known:  # a reply never passes the model's own maximum
            output = min(output, facts.max_output)
        tokens = prompt_tokens + output
        if self._free:
            return Bound(0.0, tokens)
        if facts.price is None:
            return Bound(None, tokens)
        return Bound(facts.price.cost(Usage(prompt_tokens, output)), tokens)

    def _refused_reason(self, limit: LimitName, bound: Bound) -> str:
        """The error string of a refused sub-call: it names the budget and says why."""
        if self.budget.exhausted() == limit:
            return f"not sent: the {limit} budget is used up"
        if limit == "max_cost":
            most, left = f"${bound.cost or 0.0:.4f}", f"${self.budget.left(limit):.4f}"
        else:
            most, left = f"{bound.tokens:,} tokens", f"{self.budget.left(limit):,.0f} tokens"
        return (
            f"not sent: the {limit} budget cannot cover it (it could take up to {most}, its "
            f"prompt and its most output tokens; {left} left). Fewer or smaller calls may fit; "
            "--max-output-tokens lowers the most a call can take"
        )

    def _failed(
        self,
        caller: Caller,
        exc: BaseException,
        subcall_id: int,
        cell: int,
        model: str,
        started: float,
        batch_id: int | None,
    ) -> str:
        if isinstance(exc, ProviderAuthError):
            self._on_fatal(exc)
        caller.failed(failure_kind(exc), exc.limit if isinstance(exc, BudgetRefused) else None)
        cancelled = isinstance(exc, asyncio.CancelledError)
        error = "cancelled: its cell was over" if cancelled else str(exc)
        self._bus.emit(
            SubcallFinished(
                caller.run_id,
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
            raise exc
        return call_failed(error)

    def _refusal(self, prompt: str, model: str) -> str | None:
        """Why a prompt cannot fit the worker's window, checked before anything is spent."""
        facts = self._catalog.facts(model)  # the figure the root was told (engine/capacity.py)
        if len(prompt) <= facts.prompt_chars:
            return None
        over = len(prompt) - facts.prompt_chars
        return (
            f"not sent: the prompt has {len(prompt):,} characters, {over:,} more than the "
            f"{facts.prompt_chars:,} one {model} prompt may hold (a {facts.window:,}-token "
            f"window). Split the text into chunks of at most {facts.prompt_chars:,} characters "
            "(chunks() does), instruction included."
        )

    def _retry_reporter(self, run_id: str, model: str) -> RetryCallback:
        report = retry_reporter(self._bus, run_id, "sub", model)

        def on_retry(attempt: int, delay: float, error: RetryableError) -> None:
            if error.rate_limited:
                self.limit(self._provider.name).rate_limited()
            report(attempt, delay, error)

        return on_retry


def retry_reporter(bus: EventBus, run_id: str, purpose: str, model: str) -> RetryCallback:
    """A callback for providers that turns each retry into a `retry` event."""

    def report(attempt: int, delay: float, error: RetryableError) -> None:
        bus.emit(
            Retry(
                run_id,
                purpose=purpose,
                model=model,
                attempt=attempt,
                delay_s=delay,
                reason=str(error),
            )
        )

    return report


async def _keeping(replies: list[str | None], *jobs: Awaitable[None]) -> None:
    """Run the jobs that fill `replies`. Cancelled part way (the cell is being stopped), they
    end in QueryStopped carrying the replies that came back, so the cell keeps what was paid
    for; the other slots hold an error string."""
    try:
        await asyncio.gather(*jobs)
    except asyncio.CancelledError:
        answered = sum(reply is not None for reply in replies)
        stopped = call_failed("stopped: the cell was stopped before this reply came back")
        results = [stopped if reply is None else reply for reply in replies]
        raise QueryStopped(results, answered) from None


def _all(replies: list[str | None]) -> list[str]:
    """The replies of a call whose jobs all finished (each fills its slot, or raises)."""
    assert all(reply is not None for reply in replies)
    return [reply or "" for reply in replies]


def _with_context(question: str, context: Any) -> str:
    """An rlm_query sent as a plain llm_query: the question, then the context it was given."""
    if context is None:
        return question
    text = context if isinstance(context, str) else repr(context)
    return f"{question}\n\nContext:\n{text}"

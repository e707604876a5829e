"""The RLM loop: root model writes code, the sandbox runs it, outputs go back, until FINAL.

A run may start child runs (`rlm_query`) one level deeper; the tree shares one sub-call router,
one budget and one event bus (`Tree`), and each run counts the calls it made itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Any

from rlm_cli.config import Settings
from rlm_cli.engine import capacity, direct, prompts
from rlm_cli.engine.budget import Budget, Limits
from rlm_cli.engine.caching import ReplyStore, caching
from rlm_cli.engine.parsing import extract_code_blocks, find_prose_final
from rlm_cli.engine.result import RunResult
from rlm_cli.engine.router import (
    Caller,
    SubcallRouter,
    failure_kind,
    retry_reporter,
)
from rlm_cli.engine.usage import UsageLedger
from rlm_cli.errors import InternalError, ProviderAuthError, RlmError, RunStatus
from rlm_cli.events import (
    CellFinished,
    CellStarted,
    EventBus,
    FinalAnswer,
    IterationStarted,
    RootReply,
    RootTextDelta,
    RunFinished,
    RunStarted,
)
from rlm_cli.inputs import Inputs, from_value
from rlm_cli.providers.anthropic_provider import THINKING_BUDGET
from rlm_cli.providers.base import Message, ModelRequest, Provider
from rlm_cli.providers.catalog import Catalog, providers
from rlm_cli.sandbox.host import CellResult, QueryRequest, Sandbox
from rlm_cli.sandbox.notes import call_failed
from rlm_cli.sandbox.policy import make_policy

# Child runs of one batch started at once: each is a worker process of its own.
CHILD_CONCURRENCY = 4


@dataclass(frozen=True)
class Final:
    answer: str
    source: str


class Tree:
    """What every run of one `rlm ask` shares: settings, providers, router, budget, events, and
    the one error that ends the whole tree (`fatal`, bad credentials)."""

    def __init__(
        self,
        settings: Settings,
        root: Provider,
        worker: Provider,
        bus: EventBus,
        cache: ReplyStore | None = None,
    ) -> None:
        self.settings = settings
        # Sub-calls' replies are cached (unless `cache: false`); root calls' only with
        # `cache_root`. A child run's root calls go to the worker's endpoint (`child_root`).
        root_cache = cache if settings.cache_root else None
        self.root = caching(root, root_cache)
        self.worker = caching(worker, cache)
        self.child_root = caching(worker, root_cache)
        self.fatal: RlmError | None = None
        self.method = prompts.method_text(settings.system_prompt)  # the system prompt's template
        self.bus = bus
        self.catalog = Catalog(settings.prices)
        self.budget = Budget(
            Limits(settings.max_cost, settings.max_tokens, settings.max_subcalls, settings.timeout),
            bus,
        )
        self.router = SubcallRouter(
            provider=self.worker,
            model=settings.worker_model,
            catalog=self.catalog,
            max_concurrency=settings.max_concurrency,
            bus=bus,
            budget=self.budget,
            on_fatal=self.fail,
            redact_secrets=settings.redact_secrets,
            max_output_tokens=_sub_max_output(settings),
            free=_local(settings.worker_provider),
        )
        # Child runs started at once, per depth: one shared limit would deadlock, with children
        # holding every slot while they wait for slots for their own children.
        self.children: dict[int, asyncio.Semaphore] = {}

    async def learn_capacity(self) -> None:
        """Settle the worker model's window (the server may say): the top run does, before its
        first request and before any child starts."""
        await capacity.learn(self.catalog, self.worker, self.settings)

    def fail(self, error: RlmError) -> None:
        """End the whole tree with `error` (the first one kept), once the current cell is over."""
        if self.fatal is None:
            self.fatal = error

    def child_slots(self, depth: int) -> asyncio.Semaphore:
        if depth not in self.children:
            self.children[depth] = asyncio.Semaphore(CHILD_CONCURRENCY)
        return self.children[depth]


class Run:
    """One RLM run over one set of inputs."""

    def __init__(
        self,
        question: str,
        inputs: Inputs,
        tree: Tree,
        *,
        depth: int = 0,
        parent: tuple[str, int] | None = None,
        root_model: str | None = None,
        estimate: dict[str, Any] | None = None,
        summary: str | None = None,
    ) -> None:
        self.question = question
        # The top run's cost estimate and input summary line, for its run_started.
        self.estimate, self.summary = estimate, summary
        self.inputs = inputs
        self.tree = tree
        self.settings = tree.settings
        self.bus = tree.bus
        self.depth = depth
        self.parent = parent  # (run id, cell) of the rlm_query that started this run
        self.root_model = root_model or self.settings.root_model
        self.run_id = uuid.uuid4().hex[:12]
        if depth == 0:
            tree.budget.owner = self.run_id  # budget warnings belong to the top run
        self.ledger = UsageLedger()
        can_recurse = depth + 1 < self.settings.max_depth
        self.caller = Caller(
            self.run_id, depth + 1, self.ledger, self._start_child if can_recurse else None
        )
        policy = make_policy(
            "none" if self.settings.sandbox == "none" else "process",
            input_bytes=inputs.total_bytes,
            cell_timeout=self.settings.cell_timeout,
            max_iterations=self.settings.max_iterations,
            memory_mib=self.settings.worker_memory_mb,
            allow_weaker=self.settings.allow_weaker_sandbox,
        )
        settings = self.settings
        self.facts = prompts.RunFacts(
            # How much one sub-call can take, so the root neither overflows nor over-splits.
            subcall_chars=tree.catalog.facts(settings.worker_model).prompt_chars,
            worker_model=settings.worker_model,
            output_limit=settings.output_limit,
            max_iterations=settings.max_iterations,
            cell_timeout=settings.cell_timeout,
            recursive=self.caller.start_child is not None,
            max_depth=settings.max_depth - depth,
            max_subcalls=settings.max_subcalls,
            max_cost=settings.max_cost,
            max_tokens=settings.max_tokens,
            timeout=settings.timeout,
        )
        self.sandbox = Sandbox(
            inputs,
            output_limit=settings.output_limit,
            on_query=self._on_query,
            policy=policy,
            subcall_chars=self.facts.subcall_chars,
        )
        self.messages: list[Message] = []
        self.iterations = 0
        self.cells = 0
        self.child_subcalls = 0

    async def _on_query(self, request: QueryRequest) -> list[str]:
        return await self.tree.router.handle(self.caller, request)

    async def execute(self) -> RunResult:
        started = time.monotonic()
        status: RunStatus = "error"
        final, error = None, None
        try:
            if direct.applies(self.settings, self.inputs, self.depth):
                await self._learn_capacity()
                status, final = await self._direct()
            else:
                # The worker boots (its own interpreter, on another core) while the worker
                # model's server is asked its window: neither waits for the other.
                await asyncio.gather(self.sandbox.spawn(), self._learn_capacity())
                meta = await self.sandbox.start()
                layers = self.sandbox.layers
                self._started(meta, {"mode": self.sandbox.policy.mode, "layers": layers})
                status, final = await self._loop(meta)
            if status == "ok" and self.caller.cut_by is not None:
                # A budget refused some of the work this answer should rest on: it is not ok,
                # and the status says which budget (exit 6), even though the root answered.
                status = self.caller.cut_by
        except RlmError as exc:
            error = exc
            status = exc.status
        except Exception as exc:  # a bug must still end the run with a summary and a trace
            error = InternalError(f"internal error: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        except asyncio.CancelledError:
            status = "interrupted"
            self._finish(status, None, started, "interrupted")
            raise
        finally:
            await self.sandbox.close()
        return self._finish(status, final, started, error)

    async def _learn_capacity(self) -> None:
        """At the top of the tree, settle the worker model's window (Tree.learn_capacity) and
        the sub-call size it gives, which the prompt and the worker are told."""
        if self.depth != 0:
            return  # settled by the top run, before any child starts
        await self.tree.learn_capacity()
        chars = self.tree.catalog.facts(self.settings.worker_model).prompt_chars
        self.facts = dataclasses.replace(self.facts, subcall_chars=chars)
        self.sandbox.subcall_chars = chars

    def _started(self, meta: dict[str, Any], sandbox: dict[str, Any]) -> None:
        """Emit this run's run_started: its context's metadata and the sandbox it has."""
        self.bus.emit(
            RunStarted(
                self.run_id,
                question=self.question,
                root_model=self.root_model,
                sub_model=self.settings.worker_model,
                inputs=self.inputs.summary(),
                context_meta=meta,
                settings=self.settings.public(),
                depth=self.depth,
                parent_run_id=self.parent[0] if self.parent else None,
                parent_cell=self.parent[1] if self.parent else None,
                sandbox=sandbox,
                estimate=self.estimate,
                summary=self.summary,
            )
        )

    async def _direct(self) -> tuple[RunStatus, Final | None]:
        """The whole input and the question in one root call (--direct-below): no REPL."""
        text = direct.read(self.inputs)
        meta = {"type": "str", "chars": len(text), "direct": True}
        self._started(meta, {"mode": "direct", "layers": {}})
        self.messages = direct.messages(self.question, text)
        self.iterations = 1
        self.bus.emit(IterationStarted(self.run_id, iteration=1, max_iterations=1, last_turn=False))
        try:
            text = await asyncio.wait_for(
                self._call_root(1), self.tree.budget.time_left(reserve=False)
            )
        except TimeoutError:
            return "timeout", None
        return "ok", self._announce(1, text.strip(), "direct")

    def _finish(
        self, status: RunStatus, final: Final | None, started: float, error: RlmError | str | None
    ) -> RunResult:
        failures = self.caller.failures  # this run's and its child runs'
        summary = RunFinished(
            self.run_id,
            status=status,
            # An empty answer is none: the CLI says "no answer", never "a best effort".
            answer=final.answer if final and final.answer.strip() else None,
            iterations=self.iterations,
            subcalls=self.caller.started + self.child_subcalls,
            usage=self.ledger.to_json(),
            elapsed_s=round(time.monotonic() - started, 3),
            error=None if error is None else str(error),
            redacted=self.tree.router.redacted if self.depth == 0 else self.caller.redacted,
            subcalls_failed=failures.total(),
            failures=dict(failures),
        )
        self.bus.emit(summary)
        return RunResult(
            summary,
            error if isinstance(error, RlmError) else None,
            strict=self.settings.strict,
            trace=self.settings.trace if self.depth == 0 else None,
        )

    # ----- the loop -----

    async def _loop(self, meta: dict[str, Any]) -> tuple[RunStatus, Final | None]:
        limit = self.settings.max_iterations
        facts = self.facts
        self.messages = [
            Message("system", prompts.system_prompt(self.tree.method, facts)),
            Message("user", prompts.first_message(self.question, meta, facts)),
        ]
        status: RunStatus = "max_iterations"
        for iteration in range(1, limit + 1):
            reached = self.tree.budget.exhausted()
            if reached is not None:
                status = reached
                break
            try:
                final, feedback = await self._turn(iteration, last_turn=False)
            except TimeoutError:  # the time budget ran out during the root's reply
                status = "timeout"
                break
            if final is not None:
                return "ok", final
            self.messages.append(Message("user", feedback))
        if self.depth > 0 and status != "max_iterations":
            return status, None  # the reserve is the top run's: a child stops at once
        # Out of iterations or budget: one last turn, on the reserve, for a best-effort answer.
        self.messages.append(Message("user", prompts.last_turn(status, limit)))
        try:
            final, _ = await self._turn(self.iterations + 1, last_turn=True)
        except TimeoutError:
            final = None
        return status, final

    async def _turn(self, iteration: int, *, last_turn: bool) -> tuple[Final | None, str]:
        """One root call and its code. Returns the final answer if the turn produced one, else
        the feedback message for the next turn."""
        self.iterations = iteration
        self.bus.emit(
            IterationStarted(
                self.run_id,
                iteration=iteration,
                max_iterations=self.settings.max_iterations,
                last_turn=last_turn,
            )
        )
        time_left = self.tree.budget.time_left(reserve=not last_turn)
        text = await asyncio.wait_for(self._call_root(iteration), time_left)
        self.messages.append(Message("assistant", text))
        blocks = extract_code_blocks(text)
        if not blocks:
            final = await self._prose_final(iteration, text, last_turn)
            if final is None and last_turn:
                final = self._announce(iteration, text.strip(), "reply")
            return final, prompts.NO_CODE
        outputs = []
        for code in blocks:
            before = self._subcall_tally()
            result = await self._run_cell(iteration, code, last_turn)
            # What a budget refused during the cell goes with its output: the code may not say.
            notes, self.caller.notes = self.caller.notes, []
            summary = self._subcall_summary(before, result.waited_s)
            outputs.append("\n\n".join([result.output, *notes, *summary]))
            if self.tree.fatal is not None:
                raise self.tree.fatal
            if result.final is not None:
                return self._announce(iteration, result.final, result.final_source or "FINAL"), ""
            if not last_turn and self.tree.budget.exhausted():
                break  # the remaining blocks would only spend what is no longer there
        if last_turn:
            prose = find_prose_final(text)
            if prose is not None and prose.answer is not None:
                return self._announce(iteration, prose.answer, "prose"), ""
        left = self.tree.budget.remaining()
        return None, prompts.cell_feedback(outputs, iteration, self.facts, left)

    async def _prose_final(self, iteration: int, text: str, last_turn: bool) -> Final | None:
        """A FINAL written as text counts only in a turn without code (see METHOD.md)."""
        prose = find_prose_final(text)
        if prose is None:
            return None
        if prose.variable is not None:
            code = f"FINAL_VAR({prose.variable!r})"
            result = await self._run_cell(iteration, code, last_turn)
            if result.final is None:
                # No such variable: no answer, and on the last turn the reply is not one either
                # (it would pass "FINAL_VAR(x)" off as the answer).
                return Final("", "FINAL_VAR") if last_turn else None
            return self._announce(iteration, result.final, "FINAL_VAR")
        assert prose.answer is not None
        return self._announce(iteration, prose.answer, "prose")

    def _subcall_tally(self) -> tuple[int, int]:
        """Sub-calls this run and its children have made, and how many failed, so far."""
        return self.caller.started + self.child_subcalls, self.caller.failures.total()

    def _subcall_summary(self, before: tuple[int, int], waited_s: float) -> list[str]:
        """The line a cell's output ends with when it made sub-calls, as the root sees it."""
        made, failed = (now - then for now, then in zip(self._subcall_tally(), before, strict=True))
        if not made and not failed:
            return []
        calls = "sub-call" if made == 1 else "sub-calls"
        return [
            f"[{made:,} {calls} · {self.settings.worker_model} · {waited_s:.1f} s waiting · "
            f"{failed:,} failed]"
        ]

    def _announce(self, iteration: int, answer: str, source: str) -> Final:
        self.bus.emit(FinalAnswer(self.run_id, iteration=iteration, answer=answer, source=source))
        return Final(answer, source)

    async def _call_root(self, iteration: int) -> str:
        model = self.root_model
        request = ModelRequest(
            model=model,
            messages=tuple(self.messages),
            purpose="root",
            on_retry=retry_reporter(self.bus, self.run_id, "root", model),
        )
        started = time.monotonic()

        def on_text(text: str) -> None:
            self.bus.emit(RootTextDelta(self.run_id, iteration=iteration, text=text))

        provider = self.tree.root if self.depth == 0 else self.tree.child_root
        completion = await provider.stream(request, on_text)
        self.tree.budget.record(self.ledger, self.depth, completion)
        cached = completion.cached
        self.bus.emit(
            RootReply(
                self.run_id,
                iteration=iteration,
                text=completion.text,
                model=completion.model,
                usage={} if cached else completion.usage.to_json(),
                elapsed_s=round(time.monotonic() - started, 3),
                code_blocks=len(extract_code_blocks(completion.text)),
                cost_usd=0.0 if cached else completion.cost_usd,
                cached=cached,
            )
        )
        return completion.text

    async def _run_cell(self, iteration: int, code: str, last_turn: bool) -> CellResult:
        self.cells += 1
        cell = self.cells
        self.bus.emit(CellStarted(self.run_id, iteration=iteration, cell=cell, code=code))
        time_left = self.tree.budget.time_left(reserve=not last_turn)
        deadline = None if time_left is None else max(time_left, 0.1)
        result = await self.sandbox.execute(code, self.settings.cell_timeout, deadline)
        self.bus.emit(
            CellFinished(
                self.run_id,
                iteration=iteration,
                cell=cell,
                output=result.output,
                output_chars=result.output_chars,
                error=result.error,
                elapsed_s=round(result.elapsed_s, 3),
                timed_out=result.timed_out,
                worker_restarted=result.restarted,
            )
        )
        return result

    # ----- child runs -----

    async def _start_child(self, question: str, context: Any, model: str | None, cell: int) -> str:
        """rlm_query: a child run one level down, with its own REPL, sharing this tree."""
        async with self.tree.child_slots(self.depth + 1):
            reached = self.tree.budget.exhausted()
            if reached is not None:  # it waited for a slot while the budget ran out
                self.caller.failed("budget", reached)
                return call_failed(f"not run: the {reached} budget is used up", "rlm_query")
            inputs = self.inputs if context is None else from_value(context)
            child = Run(
                question,
                inputs,
                self.tree,
                depth=self.depth + 1,
                parent=(self.run_id, cell),
                root_model=model or self.settings.worker_model,
            )
            try:
                result = await child.execute()
            except asyncio.CancelledError:  # its parent's cell was stopped: its work is lost
                self.caller.failed("timeout")
                raise
            finally:  # a cancelled child's calls were made all the same: count them
                self.ledger.merge(child.ledger)
                self.child_subcalls += child.caller.started + child.child_subcalls
                self.caller.failures.update(child.caller.failures)
                if child.caller.cut_by is not None:
                    self.caller.cut(child.caller.cut_by)
                if inputs is not self.inputs:
                    inputs.cleanup()
        if isinstance(result.error, ProviderAuthError):
            self.tree.fail(result.error)  # bad credentials end the whole tree
        if result.error is not None:
            self.caller.failed(failure_kind(result.error))
            return call_failed(str(result.error), "rlm_query")
        if result.answer is None:  # the child's work is lost to this run: one failed sub-call
            match result.status:  # a child stopped by a budget cuts its parent's run too
                case "max_cost" | "max_tokens" | "max_subcalls" as budget:
                    self.caller.failed("budget", budget)
                case "timeout":
                    self.caller.failed("timeout")
                case _:
                    self.caller.failed("other")
            return call_failed(f"its run ended with {result.status}", "rlm_query")
        return result.answer


def _sub_max_output(settings: Settings) -> int | None:
    """The most output tokens a sub-call asks for, if a setting bounds it (else the model's own
    maximum bounds it): part of what a call can cost at most, for the budgets."""
    if settings.max_output_tokens is None:
        return None
    info = providers().get(settings.worker_provider)
    # Extended thinking adds its budget to the output tokens an Anthropic request asks for.
    thinking = THINKING_BUDGET.get(settings.reasoning_effort or "", 0)
    extra = thinking if info is not None and info.kind == "anthropic" else 0
    return settings.max_output_tokens + extra


def _local(provider: str) -> bool:
    """A local provider (and the scripted one) costs nothing, whatever a model's price."""
    info = providers().get(provider)
    return info is not None and info.local

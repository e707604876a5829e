"""The RLM loop: root model writes code, the sandbox runs it, outputs go back, until FINAL."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rlm_cli.config import Settings
from rlm_cli.engine import prompts
from rlm_cli.engine.parsing import extract_code_blocks, find_prose_final
from rlm_cli.engine.router import SubcallRouter, retry_reporter
from rlm_cli.engine.usage import UsageLedger
from rlm_cli.errors import InternalError, RlmError
from rlm_cli.events import (
    CellFinished,
    CellStarted,
    Event,
    EventBus,
    FinalAnswer,
    IterationStarted,
    RootReply,
    RootTextDelta,
    RunFinished,
    RunStarted,
)
from rlm_cli.inputs import Inputs
from rlm_cli.providers.base import Message, ModelRequest, Provider
from rlm_cli.providers.catalog import Catalog
from rlm_cli.sandbox.host import CellResult, Sandbox


@dataclass
class RunResult:
    run_id: str
    status: str
    answer: str | None
    iterations: int
    subcalls: int
    usage: dict[str, Any]
    elapsed_s: float
    error: RlmError | None = None
    events: list[Event] = field(default_factory=list, repr=False)

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        return 0 if self.status == "ok" else 6


@dataclass(frozen=True)
class Final:
    answer: str
    source: str


class Run:
    """One RLM run over one set of inputs."""

    def __init__(
        self,
        question: str,
        inputs: Inputs,
        settings: Settings,
        root: Provider,
        worker: Provider,
        bus: EventBus,
    ) -> None:
        self.question = question
        self.inputs = inputs
        self.settings = settings
        self.root = root
        self.bus = bus
        self.run_id = uuid.uuid4().hex[:12]
        self.ledger = UsageLedger()
        self.catalog = Catalog(settings.prices)
        self.router = SubcallRouter(
            run_id=self.run_id,
            provider=worker,
            model=settings.worker_model,
            catalog=self.catalog,
            max_concurrency=settings.max_concurrency,
            bus=bus,
            ledger=self.ledger,
        )
        self.sandbox = Sandbox(
            inputs, output_limit=settings.output_limit, on_query=self.router.handle
        )
        self.messages: list[Message] = []
        self.iterations = 0
        self.cells = 0

    async def execute(self) -> RunResult:
        started = time.monotonic()
        status, final, error = "error", None, None
        try:
            meta = await self.sandbox.start()
            self.bus.emit(
                RunStarted(
                    self.run_id,
                    question=self.question,
                    root_model=self.settings.root_model,
                    sub_model=self.settings.worker_model,
                    inputs=self.inputs.summary(),
                    context_meta=meta,
                    settings=self.settings.public(),
                )
            )
            status, final = await self._loop(meta)
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

    def _finish(
        self, status: str, final: Final | None, started: float, error: RlmError | str | None
    ) -> RunResult:
        result = RunResult(
            run_id=self.run_id,
            status=status,
            answer=final.answer if final else None,
            iterations=self.iterations,
            subcalls=self.router.count,
            usage=self.ledger.to_json(),
            elapsed_s=round(time.monotonic() - started, 3),
            error=error if isinstance(error, RlmError) else None,
        )
        self.bus.emit(
            RunFinished(
                self.run_id,
                status=result.status,
                answer=result.answer,
                iterations=result.iterations,
                subcalls=result.subcalls,
                usage=result.usage,
                elapsed_s=result.elapsed_s,
                error=None if error is None else str(error),
            )
        )
        return result

    async def _loop(self, meta: dict[str, Any]) -> tuple[str, Final | None]:
        limit = self.settings.max_iterations
        # Tell the root how much one sub-call can take, so it neither overflows nor over-splits.
        subcall_chars = self.catalog.facts(self.settings.worker_model).prompt_chars
        self.messages = [
            Message("system", prompts.system_prompt(subcall_chars, self.settings.output_limit)),
            Message("user", prompts.first_message(self.question, meta)),
        ]
        for iteration in range(1, limit + 1):
            final, feedback = await self._turn(iteration, last_turn=False)
            if final is not None:
                return "ok", final
            self.messages.append(Message("user", feedback))
        # Out of iterations: one last turn for a best-effort answer.
        self.messages.append(Message("user", prompts.LAST_TURN.format(iterations=limit)))
        final, _ = await self._turn(limit + 1, last_turn=True)
        return "max_iterations", final

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
        text = await self._call_root(iteration)
        self.messages.append(Message("assistant", text))
        blocks = extract_code_blocks(text)
        if not blocks:
            final = await self._prose_final(iteration, text)
            if final is None and last_turn:
                final = self._announce(iteration, text.strip(), "reply")
            return final, prompts.NO_CODE
        outputs = []
        for code in blocks:
            result = await self._run_cell(iteration, code)
            outputs.append(result.output)
            if self.router.fatal is not None:
                raise self.router.fatal
            if result.final is not None:
                return self._announce(iteration, result.final, result.final_source or "FINAL"), ""
        if last_turn:
            prose = find_prose_final(text)
            if prose is not None and prose.answer is not None:
                return self._announce(iteration, prose.answer, "prose"), ""
        return None, prompts.cell_feedback(outputs, iteration, self.settings.max_iterations)

    async def _prose_final(self, iteration: int, text: str) -> Final | None:
        """A FINAL written as text counts only in a turn without code (see METHOD.md)."""
        prose = find_prose_final(text)
        if prose is None:
            return None
        if prose.variable is not None:
            result = await self._run_cell(iteration, f"FINAL_VAR({prose.variable!r})")
            if result.final is None:
                return None
            return self._announce(iteration, result.final, "FINAL_VAR")
        assert prose.answer is not None
        return self._announce(iteration, prose.answer, "prose")

    def _announce(self, iteration: int, answer: str, source: str) -> Final:
        self.bus.emit(FinalAnswer(self.run_id, iteration=iteration, answer=answer, source=source))
        return Final(answer, source)

    async def _call_root(self, iteration: int) -> str:
        model = self.settings.root_model

        request = ModelRequest(
            model=model,
            messages=tuple(self.messages),
            purpose="root",
            on_retry=retry_reporter(self.bus, self.run_id, "root", model),
        )
        started = time.monotonic()

        def on_text(text: str) -> None:
            self.bus.emit(RootTextDelta(self.run_id, iteration=iteration, text=text))

        completion = await self.root.stream(request, on_text)
        self.ledger.add(completion.model, completion.usage, completion.cost_usd)
        self.bus.emit(
            RootReply(
                self.run_id,
                iteration=iteration,
                text=completion.text,
                model=completion.model,
                usage=completion.usage.to_json(),
                elapsed_s=round(time.monotonic() - started, 3),
                code_blocks=len(extract_code_blocks(completion.text)),
                cost_usd=completion.cost_usd,
            )
        )
        return completion.text

    async def _run_cell(self, iteration: int, code: str) -> CellResult:
        self.cells += 1
        cell = self.cells
        self.bus.emit(CellStarted(self.run_id, iteration=iteration, cell=cell, code=code))
        result = await self.sandbox.execute(code, self.settings.cell_timeout)
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

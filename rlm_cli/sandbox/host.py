"""Host side of the REPL: runs cells in the worker, reads and checks its frames, answers its
sub-calls.

The worker runs code a model wrote, so the host treats it as hostile: every frame is checked
(`frames`), a worker that breaks the protocol is replaced, and what it sends is bounded (frame
size, sub-call prompts held at once, output). The worker process itself (its start, its exit,
its kill, the watch of its process tree) is `process`; what a cell is told when its worker was
stopped or replaced is `notes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from rlm_cli.errors import SandboxError, SandboxUnavailable
from rlm_cli.inputs import Inputs
from rlm_cli.sandbox import frames, notes
from rlm_cli.sandbox.clock import CellClock
from rlm_cli.sandbox.frames import BadFrame
from rlm_cli.sandbox.policy import Policy, make_policy
from rlm_cli.sandbox.process import WorkerProcess, hide_environment, launch
from rlm_cli.sandbox.worker.protocol import (
    HEADER,
    MAX_FRAME,
    ExecFrame,
    InitFrame,
    Layer,
    QueryFrame,
    ReplyFrame,
    SourceWire,
    encode_frame,
)

# After SIGINT, how long a timed-out cell gets to unwind before the worker is killed and replaced.
INTERRUPT_GRACE_S = 0.5
# Sub-call frames held at once (their weight, and their number): past either, the host stops
# reading the worker's frames until replies go out, so a flood waits in the pipe, not in memory.
INFLIGHT_WEIGHT = 96 * 1024 * 1024  # frames.weight: the memory their parsed form may take
INFLIGHT_QUERIES = 1024
QUERY_START = b'{"type": "query"'  # how encode_frame starts a query frame


@dataclass(frozen=True)
class QueryRequest:
    """Sub-calls asked for by one llm_query / llm_query_batched / rlm_query(_batched) call."""

    prompts: list[str]
    model: str | None
    batched: bool
    cell: int
    kind: str = "llm"  # "llm", or "rlm" for child runs
    contexts: list[Any] | None = None  # rlm_query: the child contexts given (None: the parent's)


class QueryRefused(Exception):
    """Raised by a query handler to refuse a request before spending anything (a budget): the
    calling code gets an exception with this message instead of replies."""


class QueryStopped(Exception):
    """Raised by a query handler whose task was cancelled part way (its cell is being stopped):
    the replies that came back, in order, with error strings in the other slots. They go back
    to the cell, so the work already paid for is kept."""

    def __init__(self, results: list[str], answered: int) -> None:
        super().__init__(f"stopped with {answered} of {len(results)} replies")
        self.results = results
        self.answered = answered


QueryHandler = Callable[[QueryRequest], Awaitable[list[str]]]


@dataclass(frozen=True)
class CellResult:
    output: str
    output_chars: int
    error: bool
    final: str | None
    final_source: str | None
    elapsed_s: float
    timed_out: bool = False
    restarted: bool = False
    waited_s: float = 0.0  # of elapsed_s, the time spent waiting on sub-calls


class WorkerDied(Exception):
    pass


class Sandbox:
    """One worker process holding `context` and the model's variables for a whole run.

    `python` is the interpreter command (tests run the worker as another user with another
    Python); `policy` defaults to the process sandbox sized for `inputs`.
    """

    def __init__(
        self,
        inputs: Inputs,
        *,
        output_limit: int,
        on_query: QueryHandler,
        policy: Policy | None = None,
        python: list[str] | None = None,
        subcall_chars: int = 100_000,
    ) -> None:
        self._inputs = inputs
        self._output_limit = output_limit
        # Sent to the worker at start: the run may settle it after the process is spawned.
        self.subcall_chars = subcall_chars
        self._on_query = on_query
        self._workdir = tempfile.mkdtemp(prefix="rlm-sandbox-")
        self.policy = policy or make_policy(
            "process", input_bytes=inputs.total_bytes, cell_timeout=120, max_iterations=30
        )
        self._python = python or [sys.executable]
        self._proc: WorkerProcess | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._queries: set[asyncio.Task[tuple[int, int] | None]] = set()
        self._inflight_weight = 0
        self._room = asyncio.Condition()
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._cell = 0
        self._running: int | None = None  # the cell whose result is awaited
        self._clock: CellClock | None = None  # that cell's own time
        self.meta: dict[str, Any] = {}
        self.layers: dict[str, Layer] = {}

    @property
    def tmp_dir(self) -> str:
        """The worker's private temporary directory (a tmpfs inside its mount namespace)."""
        return self._workdir

    @property
    def pid(self) -> int | None:
        return self._proc.popen.pid if self._proc else None

    async def start(self) -> dict[str, Any]:
        """Start the worker and wait until it has loaded the inputs; returns the context metadata.

        Raises SandboxUnavailable when a layer of the process sandbox is missing (unless the
        policy allows a weaker one), SandboxError when the worker cannot start or load."""
        await self.spawn()
        assert self._proc is not None and self._ready is not None
        init: InitFrame = {
            "type": "init",
            # Source.wire() is SourceWire's shape; inputs/ sits below sandbox/ and cannot name it.
            "sources": cast(list[SourceWire], [source.wire() for source in self._inputs.sources]),
            "shape": self._inputs.shape,
            "output_limit": self._output_limit,
            "subcall_chars": self.subcall_chars,
        }
        try:
            await self._send(init)
            message = await self._ready
        except (WorkerDied, ConnectionError):
            raise SandboxError(f"the REPL worker failed to start: {self._death_detail()}") from None
        self.layers = message["sandbox"]
        self._proc.isolated = self.layers["namespaces"]["active"]
        self._check_layers()
        if message["type"] == "init_error":
            raise SandboxError(f"the REPL worker could not load the inputs: {message['error']}")
        self.meta = message["meta"]
        return self.meta

    def _check_layers(self) -> None:
        if self.policy.mode == "none" or self.policy.allow_weaker:
            return
        missing = [
            f"{name} ({lay['detail']})" for name, lay in self.layers.items() if not lay["active"]
        ]
        if missing:
            raise SandboxUnavailable(
                f"the sandbox is weaker than required here: {'; '.join(missing)}. "
                "Run `rlm doctor` for details; pass --allow-weaker-sandbox to run anyway"
            )

    async def execute(self, code: str, timeout: float, deadline: float | None = None) -> CellResult:
        """Run one cell. It is stopped past `timeout` seconds of its own time (waits on its
        sub-calls do not count: `CellClock`) or `deadline` seconds of wall clock (the run's
        time left); a dead or stuck worker is replaced."""
        try:
            return await self._execute(code, timeout, deadline)
        finally:
            self._running = None
            self._clock = None
            self._cancel_queries()

    async def _execute(self, code: str, timeout: float, deadline: float | None) -> CellResult:
        if self._proc is None or self._proc.exited.done():
            await self._restart()
        self._cell += 1
        cell_id = self._cell
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cell_id] = future
        self._running = cell_id
        clock = self._clock = CellClock(timeout)
        started = time.monotonic()
        frame: ExecFrame = {
            "type": "exec",
            "id": cell_id,
            "code": code,
            "cpu_seconds": self.policy.cpu_per_cell,
        }

        async def run() -> dict[str, Any]:
            # The send counts against the time limit too: a worker that stops reading its stdin
            # would otherwise hold the host in drain() for ever.
            await self._send(frame)
            return await asyncio.shield(future)

        cell = asyncio.ensure_future(run())
        try:
            passed = await _wait_within(
                cell, clock, None if deadline is None else started + deadline
            )
            if passed is None:
                return self._result(cell.result(), started, clock)
        except (WorkerDied, ConnectionError):
            return await self._replace(started, await self._death_note())
        finally:
            cell.cancel()
        why = notes.cell_time(timeout) if passed == "cell" else notes.run_time(deadline or 0.0)
        # Sub-calls in flight end first: the replies already back go to the cell, which gets a
        # moment to take them (`results = llm_query_batched(...)` completes), then its interrupt.
        kept, asked = await self._stop_queries()
        note = notes.fanout_stopped(kept, asked) + notes.stopped(why)
        if asked and await _within(future, INTERRUPT_GRACE_S):
            return self._stopped(future, started, clock, note)
        if self._proc is not None:
            self._proc.signal(signal.SIGINT)
        if not await _within(future, INTERRUPT_GRACE_S):
            return await self._replace(started, notes.did_not_stop(why), timed_out=True)
        return self._stopped(future, started, clock, note)

    async def close(self) -> None:
        await self._stop_process()
        shutil.rmtree(self._workdir, ignore_errors=True)

    # ----- the worker process -----

    async def spawn(self) -> None:
        """Launch the worker process, unless it runs already: it boots (an interpreter, its
        namespaces) on its own while the host goes on, and waits for `start` to send it the
        inputs. A run spawns it early so the boot overlaps the host's own start-up."""
        if self._proc is not None:
            return
        self._ready = asyncio.get_running_loop().create_future()
        hide_environment()
        proc, stdout = await launch(self._python, self.policy, self._workdir)
        proc.tasks.append(asyncio.create_task(self._read_frames(proc, stdout)))
        self._proc = proc

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        self._cancel_queries()
        if proc is not None:
            await proc.stop()

    async def _restart(self) -> None:
        await self._stop_process()
        await self.start()

    # ----- results -----

    def _result(self, message: dict[str, Any], started: float, clock: CellClock) -> CellResult:
        elapsed = time.monotonic() - started
        return CellResult(
            output=_cap(message["output"], self._output_limit),
            output_chars=message["output_chars"],
            error=message["error"],
            final=message["final"],
            final_source=message["final_source"],
            elapsed_s=elapsed,
            waited_s=clock.waited(),
        )

    def _stopped(
        self, future: asyncio.Future[dict[str, Any]], started: float, clock: CellClock, note: str
    ) -> CellResult:
        """The result of a cell stopped at a time limit, with `note` saying what happened."""
        result = self._result(future.result(), started, clock)
        return dataclasses.replace(result, output=result.output + note, error=True, timed_out=True)

    async def _replace(self, started: float, why: str, *, timed_out: bool = False) -> CellResult:
        await self._restart()
        output = notes.restarted(why)
        return CellResult(
            output=output,
            output_chars=len(output),
            error=True,
            final=None,
            final_source=None,
            elapsed_s=time.monotonic() - started,
            timed_out=timed_out,
            restarted=True,
        )

    async def _death_note(self) -> str:
        proc = self._proc
        if proc is None:
            return notes.died(None, "")
        if proc.violation:
            return notes.stopped_for(proc.violation)
        code = await proc.exit_code(within=2)  # its pipe closed; it is exiting, if not gone
        return notes.died(code, proc.death_detail())

    def _death_detail(self) -> str:
        return self._proc.death_detail() if self._proc is not None else ""

    # ----- frames -----

    async def _send(self, message: InitFrame | ExecFrame | ReplyFrame) -> None:
        proc = self._proc
        if proc is None or proc.exited.done() or proc.writer.is_closing():
            raise WorkerDied
        proc.writer.write(encode_frame(message, keep_surrogates=True))
        await proc.writer.drain()

    async def _read_frames(self, proc: WorkerProcess, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                size = HEADER.unpack(header)[0]
                if size > MAX_FRAME:
                    raise BadFrame(f"a frame of {size:,} bytes; the limit is {MAX_FRAME:,}")
                body = await reader.readexactly(size)
                cost = frames.weight(body)
                if cost > frames.MAX_WEIGHT:
                    raise BadFrame(f"a frame that would take {cost >> 20:,} MiB once parsed")
                if body.startswith(QUERY_START):  # wait for room before parsing it
                    await self._make_room(cost)
                await self._dispatch(proc, frames.parse(body), cost)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except BadFrame as bad:
            # A cell forged a frame or wrote to the protocol pipe: this worker can't be trusted.
            proc.stop_for(f"broke the protocol ({bad})")
        finally:
            pending = [*self._waiting.values(), self._ready]
            self._waiting.clear()
            for future in pending:
                if future is not None and not future.done():
                    future.set_exception(WorkerDied())
                    future.exception()  # mark retrieved: nobody may be waiting any more

    async def _dispatch(self, proc: WorkerProcess, message: dict[str, Any], size: int) -> None:
        kind = message["type"]
        if kind == "query":
            request = frames.query(message)
            await self._make_room(size)  # at once, unless the fields came in another order
            self._inflight_weight += size
            clock = self._clock
            if clock is not None:
                clock.hold()  # the cell waits on it: its own time stops (released by _answer)
            task = asyncio.create_task(self._answer(proc, request, size, clock))
            self._queries.add(task)
        elif kind == "result":
            checked = frames.result(message, self._running)
            future = self._waiting.pop(checked["id"], None)
            if future is not None and not future.done():
                future.set_result(dict(checked))
        elif kind in ("ready", "init_error") and self._ready is not None and not self._ready.done():
            check = frames.ready if kind == "ready" else frames.init_error
            self._ready.set_result(dict(check(message)))
        else:
            raise BadFrame(f"an unexpected {kind[:40]!r} frame")

    async def _make_room(self, size: int) -> None:
        async with self._room:
            await self._room.wait_for(
                lambda: (
                    not self._queries
                    or (
                        self._inflight_weight + size <= INFLIGHT_WEIGHT
                        and len(self._queries) < INFLIGHT_QUERIES
                    )
                )
            )

    async def _answer(
        self, proc: WorkerProcess, message: QueryFrame, size: int, clock: CellClock | None
    ) -> tuple[int, int] | None:
        """Answer one query frame; when it was stopped part way, (replies kept, replies asked)."""
        kept = None
        try:
            request = QueryRequest(
                prompts=message["prompts"],
                model=message["model"],
                batched=message["batched"],
                cell=self._cell,
                kind=message["kind"],
                contexts=message["contexts"],
            )
            reply: ReplyFrame = {"type": "reply", "id": message["id"]}
            try:
                reply["results"] = await self._on_query(request)
            except QueryRefused as refused:
                reply["error"] = str(refused)
            except QueryStopped as stopped:
                reply["results"] = stopped.results
                kept = stopped.answered, len(stopped.results)
            except Exception as exc:  # a bug behind the handler must fail the call, not hang it
                error = notes.call_failed(f"{type(exc).__name__}: {exc}")
                reply["results"] = [error] * len(request.prompts)
            del request, message
            if proc is self._proc:  # a replaced worker's query ids mean nothing to its successor
                with contextlib.suppress(WorkerDied, ConnectionError):
                    await self._send(reply)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._queries.discard(task)
            self._inflight_weight -= size
            if clock is not None:
                clock.release()
            async with self._room:
                self._room.notify_all()
        return kept

    def _cancel_queries(self) -> None:
        """Sub-calls still running when their cell is over (left by a thread it started) would
        only hold concurrency slots the next cell needs."""
        for task in list(self._queries):
            task.cancel()

    async def _stop_queries(self) -> tuple[int, int]:
        """End the sub-calls in flight, their replies so far sent back to the cell: how many
        replies were kept, of how many asked for, over the calls stopped."""
        tasks = list(self._queries)
        for task in tasks:
            task.cancel()
        kept = asked = 0
        if not tasks:
            return kept, asked
        # Bounded: a worker that stops reading its stdin holds a reply's send for ever.
        done, _ = await asyncio.wait(tasks, timeout=INTERRUPT_GRACE_S)
        for task in done:
            outcome = None if task.cancelled() or task.exception() else task.result()
            if outcome is not None:
                kept, asked = kept + outcome[0], asked + outcome[1]
        return kept, asked


async def _wait_within(
    cell: asyncio.Future[dict[str, Any]], clock: CellClock, deadline: float | None
) -> str | None:
    """Wait for the cell to finish: None when it did, else the limit it passed first ("cell":
    its own time, by `clock`; "run": the wall-clock `deadline`, a time.monotonic() value)."""
    while not cell.done():
        clock.changed.clear()
        left = clock.left()
        if left is not None and left <= 0:
            return "cell"
        wall = None if deadline is None else deadline - time.monotonic()
        if wall is not None and wall <= 0:
            return "run"
        waits = [seconds for seconds in (left, wall) if seconds is not None]
        changed = asyncio.ensure_future(clock.changed.wait())
        try:
            await asyncio.wait(
                (cell, changed), timeout=min(waits) if waits else None,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
        finally:
            changed.cancel()
    cell.result()  # WorkerDied, ConnectionError: raised here
    return None


async def _within(future: asyncio.Future[dict[str, Any]], seconds: float) -> bool:
    """Whether the cell's result came within `seconds` (False too if its worker died)."""
    try:
        await asyncio.wait_for(asyncio.shield(future), seconds)
    except (TimeoutError, WorkerDied):
        return False
    return True


def _cap(text: str, limit: int) -> str:
    """The worker caps its output; a forged result frame is capped here again."""
    if len(text) <= limit + 200:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [output cut by the host] ...\n{text[-half:]}"


async def probe(policy: Policy | None = None, python: list[str] | None = None) -> dict[str, Layer]:
    """Start a worker on an empty input and return the layers it could set up (`rlm doctor`)."""
    from rlm_cli.inputs import from_value

    async def refuse(request: QueryRequest) -> list[str]:
        raise QueryRefused("rlm doctor makes no sub-calls")

    inputs = from_value("")
    # Sized as a run with the default settings would be.
    policy = policy or make_policy(
        "process", input_bytes=0, cell_timeout=120, max_iterations=30, allow_weaker=True
    )
    sandbox = Sandbox(inputs, output_limit=1000, on_query=refuse, policy=policy, python=python)
    try:
        await sandbox.start()
        result = await sandbox.execute("print(1 + 1)", 10)
        if result.output.strip() != "2":
            raise SandboxError(f"a cell did not run in the sandbox: {result.output[:200]}")
        return sandbox.layers
    finally:
        await sandbox.close()
        inputs.cleanup()

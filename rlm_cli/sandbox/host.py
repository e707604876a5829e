"""Host side of the REPL: starts the worker process, runs cells in it, answers its sub-calls."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rlm_cli.errors import RlmError
from rlm_cli.inputs import Inputs
from rlm_cli.sandbox import worker as worker_program
from rlm_cli.sandbox.worker import HEADER, encode_frame

# Only these variables reach the worker: API keys and other secrets must never be visible to
# model-written code.
ENV_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "SYSTEMROOT")
# After SIGINT, how long a timed-out cell gets to unwind before the worker is killed and replaced.
INTERRUPT_GRACE_S = 0.5
PR_SET_DUMPABLE = 4


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


class WorkerDied(Exception):
    pass


class SandboxError(RlmError):
    """The worker could not be started or could not load the inputs."""


class Sandbox:
    """One worker process holding `context` and the model's variables for a whole run."""

    def __init__(self, inputs: Inputs, *, output_limit: int, on_query: QueryHandler) -> None:
        self._inputs = inputs
        self._output_limit = output_limit
        self._on_query = on_query
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._queries: set[asyncio.Task[None]] = set()
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._workdir = tempfile.mkdtemp(prefix="rlm-sandbox-")
        # The worker's stderr (and whatever its cells' children write there) goes to a file, not a
        # pipe: a child process that outlives the worker must not keep the host waiting on a pipe.
        self._stderr_path = os.path.join(self._workdir, ".worker-stderr")
        self._cell = 0
        self.meta: dict[str, Any] = {}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> dict[str, Any]:
        """Start the worker and wait until it has loaded the inputs; returns the context metadata."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        env = {key: os.environ[key] for key in ENV_PASSED if key in os.environ}
        hide_environment()
        with open(self._stderr_path, "wb") as stderr:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-u",
                str(worker_program.__file__),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=env,
                cwd=self._workdir,
                start_new_session=True,  # Ctrl-C on the terminal reaches the host only
            )
        self._reader = asyncio.create_task(self._read_frames(self._proc))
        await self._send(
            {
                "type": "init",
                "sources": [source.wire() for source in self._inputs.sources],
                "shape": self._inputs.shape,
                "output_limit": self._output_limit,
            }
        )
        try:
            message = await self._ready
        except WorkerDied:
            raise SandboxError(f"the REPL worker failed to start: {self._stderr_text()}") from None
        if message["type"] == "init_error":
            raise SandboxError(f"the REPL worker could not load the inputs: {message['error']}")
        self.meta = message["meta"]
        return self.meta

    async def execute(self, code: str, timeout: float) -> CellResult:
        """Run one cell. A cell past `timeout` is interrupted; a dead or stuck worker is replaced."""
        try:
            return await self._execute(code, timeout)
        finally:
            self._cancel_queries()

    async def _execute(self, code: str, timeout: float) -> CellResult:
        if self._proc is None or self._proc.returncode is not None:
            await self._restart()
        self._cell += 1
        cell_id = self._cell
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cell_id] = future
        started = time.monotonic()
        try:
            await self._send({"type": "exec", "id": cell_id, "code": code})
            message = await asyncio.wait_for(asyncio.shield(future), timeout)
            return self._result(message, started)
        except TimeoutError:
            pass
        except (WorkerDied, ConnectionError):
            return await self._replace(started, await self._death_note())
        # Past the time limit: interrupt, and give the cell a moment to unwind.
        self._signal(signal.SIGINT)
        try:
            message = await asyncio.wait_for(asyncio.shield(future), INTERRUPT_GRACE_S)
        except (TimeoutError, WorkerDied):
            return await self._replace(
                started, f"The cell ran past the {timeout:g} s time limit and did not stop."
            )
        result = self._result(message, started)
        note = f"\n[The cell was stopped: it ran past the {timeout:g} s time limit.]"
        return CellResult(
            output=result.output + note,
            output_chars=result.output_chars,
            error=True,
            final=result.final,
            final_source=result.final_source,
            elapsed_s=result.elapsed_s,
            timed_out=True,
        )

    async def close(self) -> None:
        await self._stop_process()
        shutil.rmtree(self._workdir, ignore_errors=True)

    # ----- internals -----

    def _result(self, message: dict[str, Any], started: float) -> CellResult:
        return CellResult(
            output=message["output"],
            output_chars=message["output_chars"],
            error=message["error"],
            final=message["final"],
            final_source=message["final_source"],
            elapsed_s=time.monotonic() - started,
        )

    async def _replace(self, started: float, why: str) -> CellResult:
        await self._restart()
        output = (
            f"{why} The REPL worker was restarted: `context` is loaded again, but every variable "
            "you defined is lost. Recompute what you need, in smaller steps."
        )
        return CellResult(
            output=output,
            output_chars=len(output),
            error=True,
            final=None,
            final_source=None,
            elapsed_s=time.monotonic() - started,
            timed_out="time limit" in why,
            restarted=True,
        )

    async def _restart(self) -> None:
        await self._stop_process()
        await self.start()

    async def _death_note(self) -> str:
        code = None
        if self._proc is not None:
            with contextlib.suppress(TimeoutError):  # its pipe closed; it is exiting, if not gone
                code = await asyncio.wait_for(self._proc.wait(), 2)
        tail = self._stderr_text()
        detail = f" Its last words: {tail}" if tail else ""
        return f"The REPL worker process died (exit code {code}) while running the cell.{detail}"

    def _stderr_text(self) -> str:
        try:
            with open(self._stderr_path, "rb") as stderr:
                stderr.seek(max(os.path.getsize(self._stderr_path) - 2000, 0))
                return stderr.read().decode("utf-8", "replace").strip()[-500:]
        except OSError:
            return ""

    def _signal(self, signum: int) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signum)

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        self._cancel_queries()
        if proc is None:
            return
        # The worker runs in its own session: kill the whole group, so that children of cells die
        # too, even when the worker itself has already exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def _cancel_queries(self) -> None:
        """Sub-calls still running when their cell is over (left by a timed-out cell or a thread
        it started) would only hold concurrency slots the next cell needs."""
        for task in list(self._queries):
            task.cancel()

    async def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise WorkerDied
        proc.stdin.write(encode_frame(message, keep_surrogates=True))
        await proc.stdin.drain()

    async def _read_frames(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                header = await proc.stdout.readexactly(HEADER.size)
                body = await proc.stdout.readexactly(HEADER.unpack(header)[0])
                message = json.loads(body)
                kind = message["type"]
                if kind == "query":
                    task = asyncio.create_task(self._answer(proc, message))
                    self._queries.add(task)
                    task.add_done_callback(self._queries.discard)
                elif kind == "result":
                    future = self._waiting.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif self._ready is not None and not self._ready.done():
                    self._ready.set_result(message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (ValueError, KeyError, TypeError):
            # A garbled frame (a cell wrote to the protocol pipe): this worker can't be trusted.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        finally:
            pending = [*self._waiting.values(), self._ready]
            self._waiting.clear()
            for future in pending:
                if future is not None and not future.done():
                    future.set_exception(WorkerDied())
                    future.exception()  # mark retrieved: nobody may be waiting any more

    async def _answer(self, proc: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
        request = QueryRequest(
            prompts=message["prompts"],
            model=message.get("model"),
            batched=bool(message.get("batched")),
            cell=self._cell,
            kind=message.get("kind", "llm"),
            contexts=message.get("contexts"),
        )
        reply: dict[str, Any] = {"type": "reply", "id": message["id"]}
        try:
            reply["results"] = await self._on_query(request)
        except QueryRefused as refused:
            reply["error"] = str(refused)
        except Exception as exc:  # a bug behind the handler must fail the call, not hang the cell
            error = f"Error: llm_query failed: {type(exc).__name__}: {exc}"
            reply["results"] = [error] * len(request.prompts)
        if proc is self._proc:  # a replaced worker's query ids mean nothing to its successor
            with contextlib.suppress(WorkerDied, ConnectionError):
                await self._send(reply)


def hide_environment() -> None:
    """Make this process's /proc entries (environ, mem) unreadable to other processes of the same
    user, so cell code cannot read the API keys from /proc/<host pid>/environ. Linux only; a
    process running as root can still read them (see docs/ARCHITECTURE.md)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass

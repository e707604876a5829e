"""Host side of the REPL: starts the worker process, runs cells in it, answers its sub-calls.

The worker runs code a model wrote, so the host treats it as hostile: every frame is checked
(`frames`), a worker that breaks the protocol is replaced, what it sends is bounded (frame size,
sub-call prompts held at once, output), and the host never waits on a pipe that one of the
worker's processes might hold: it watches the worker's exit itself, and its namespace takes
every process the cells started with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import rlm_cli
from rlm_cli.errors import SandboxError, SandboxUnavailable
from rlm_cli.inputs import Inputs
from rlm_cli.sandbox import frames
from rlm_cli.sandbox.frames import BadFrame
from rlm_cli.sandbox.policy import Policy, make_policy
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

# Only these variables reach the worker: API keys and other secrets must never be visible to
# model-written code. HOME and TMPDIR point into the worker's private directory.
ENV_PASSED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
# After SIGINT, how long a timed-out cell gets to unwind before the worker is killed and replaced.
INTERRUPT_GRACE_S = 0.5
# Sub-call frames held at once (their weight, and their number): past either, the host stops
# reading the worker's frames until replies go out, so a flood waits in the pipe, not in memory.
INFLIGHT_WEIGHT = 96 * 1024 * 1024  # frames.weight: the memory their parsed form may take
INFLIGHT_QUERIES = 1024
STDERR_KEPT = 4000
QUERY_START = b'{"type": "query"'  # how encode_frame starts a query frame
WATCH_S = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PR_SET_DUMPABLE = 4
# Run the worker package from wherever rlm_cli is installed, by any interpreter (tests run it as
# another user with another Python): -I keeps the environment and the user's site out.
WORKER_MAIN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from rlm_cli.sandbox.worker.__main__ import main; main()"
)
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(rlm_cli.__file__)))


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


@dataclass
class _Process:
    """One worker process and the host's ends of its pipes."""

    popen: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter
    exited: asyncio.Future[int]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stderr_tail: bytearray = field(default_factory=bytearray)
    violation: str | None = None  # why the host stopped it ("broke the protocol (...)")
    isolated: bool = False  # in its own PID namespace (known once it is ready)


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
    ) -> None:
        self._inputs = inputs
        self._output_limit = output_limit
        self._on_query = on_query
        self._workdir = tempfile.mkdtemp(prefix="rlm-sandbox-")
        self.policy = policy or make_policy(
            "process", input_bytes=inputs.total_bytes, cell_timeout=120, max_iterations=30
        )
        self._python = python or [sys.executable]
        self._proc: _Process | None = None
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._queries: set[asyncio.Task[None]] = set()
        self._inflight_weight = 0
        self._room = asyncio.Condition()
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self._cell = 0
        self._running: int | None = None  # the cell whose result is awaited
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
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        hide_environment()
        self._proc = await self._spawn()
        init: InitFrame = {
            "type": "init",
            # Source.wire() is SourceWire's shape; inputs/ sits below sandbox/ and cannot name it.
            "sources": cast(list[SourceWire], [source.wire() for source in self._inputs.sources]),
            "shape": self._inputs.shape,
            "output_limit": self._output_limit,
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

    async def execute(self, code: str, timeout: float) -> CellResult:
        """Run one cell. A cell past `timeout` is interrupted; a dead or stuck worker is replaced."""
        try:
            return await self._execute(code, timeout)
        finally:
            self._running = None
            self._cancel_queries()

    async def _execute(self, code: str, timeout: float) -> CellResult:
        if self._proc is None or self._proc.exited.done():
            await self._restart()
        self._cell += 1
        cell_id = self._cell
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cell_id] = future
        self._running = cell_id
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

        try:
            message = await asyncio.wait_for(run(), timeout)
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
            why = f"The cell ran past the {timeout:g} s time limit and did not stop."
            return await self._replace(started, why, timed_out=True)
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

    # ----- the worker process -----

    async def _spawn(self) -> _Process:
        loop = asyncio.get_running_loop()
        env = {key: os.environ[key] for key in ENV_PASSED if key in os.environ}
        # One malloc arena per thread would reserve 64 MiB of address space each, against the
        # worker's address-space limit; two are plenty for a REPL.
        env.update(HOME=self._workdir, TMPDIR=self._workdir, MALLOC_ARENA_MAX="2")
        command = [*self._python, "-I", "-B", "-u", "-c", WORKER_MAIN, PACKAGE_ROOT]
        try:
            popen = subprocess.Popen(
                [*command, json.dumps({**self.policy.wire(), "tmp_dir": self._workdir})],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self._workdir,
                start_new_session=True,  # no controlling terminal; Ctrl-C reaches the host only
            )
        except OSError as exc:
            raise SandboxError(f"cannot start the REPL worker {command[0]}: {exc}") from None
        assert popen.stdin and popen.stdout and popen.stderr
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), popen.stdout)
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, popen.stdin
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        proc = _Process(popen, writer, _watch_exit(popen))
        errors = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(errors), popen.stderr)
        proc.tasks += [
            asyncio.create_task(self._read_frames(proc, reader)),
            asyncio.create_task(_keep_tail(errors, proc.stderr_tail)),
        ]
        if self.policy.mode == "process" and os.path.exists(f"/proc/{popen.pid}/task"):
            proc.tasks.append(asyncio.create_task(self._watch(proc)))
        return proc

    async def _watch(self, proc: _Process) -> None:
        """The address-space limit holds per process, and the kernel does not apply the process
        limit to root's uid; this holds the worker and every process its cells started to the
        same memory in total and the same number of processes, so forks cannot take the machine."""
        memory, most = self.policy.memory_bytes, self.policy.processes
        while not proc.exited.done():
            await asyncio.sleep(WATCH_S)
            used, pids, processes = tree_usage(proc.popen.pid)  # threads count, as for NPROC
            if used > memory:  # RSS counts pages forks share once in each: confirm by PSS
                used = sum(_pss(pid) for pid in pids)
            if used > memory:
                proc.violation = (
                    f"used {used >> 20:,} MiB of memory with the processes its cells started "
                    f"(the limit is {memory >> 20:,} MiB)"
                )
            elif processes > most + 2:  # the launcher and PID 1 are not the cells'
                proc.violation = f"started more than {most} processes and threads (the limit)"
            else:
                continue
            _kill(proc)
            return

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        self._cancel_queries()
        if proc is None:
            return
        _kill(proc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.exited), 5)
        # Whatever still holds the other ends of the pipes, the host lets go of its own.
        proc.writer.close()
        for task in proc.tasks:
            task.cancel()
        for task in proc.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _restart(self) -> None:
        await self._stop_process()
        await self.start()

    def _signal(self, signum: int) -> None:
        """To the worker's process group: the worker and the processes its cells started."""
        if self._proc is not None and not self._proc.exited.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.popen.pid, signum)

    # ----- results -----

    def _result(self, message: dict[str, Any], started: float) -> CellResult:
        return CellResult(
            output=_cap(message["output"], self._output_limit),
            output_chars=message["output_chars"],
            error=message["error"],
            final=message["final"],
            final_source=message["final_source"],
            elapsed_s=time.monotonic() - started,
        )

    async def _replace(self, started: float, why: str, *, timed_out: bool = False) -> CellResult:
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
            timed_out=timed_out,
            restarted=True,
        )

    async def _death_note(self) -> str:
        proc = self._proc
        if proc is not None and proc.violation:
            return f"The REPL worker was stopped: it {proc.violation}."
        code = None
        if proc is not None:
            with contextlib.suppress(TimeoutError):  # its pipe closed; it is exiting, if not gone
                code = await asyncio.wait_for(asyncio.shield(proc.exited), 2)
        detail = self._death_detail()
        last_words = f" Its last words: {detail}" if detail else ""
        return (
            f"The REPL worker process died (exit code {code}) while running the cell.{last_words}"
        )

    def _death_detail(self) -> str:
        proc = self._proc
        if proc is None:
            return ""
        if proc.violation:
            return f"it {proc.violation}"
        return bytes(proc.stderr_tail).decode("utf-8", "replace").strip()[-500:]

    # ----- frames -----

    async def _send(self, message: InitFrame | ExecFrame | ReplyFrame) -> None:
        proc = self._proc
        if proc is None or proc.exited.done() or proc.writer.is_closing():
            raise WorkerDied
        proc.writer.write(encode_frame(message, keep_surrogates=True))
        await proc.writer.drain()

    async def _read_frames(self, proc: _Process, reader: asyncio.StreamReader) -> None:
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
            proc.violation = f"broke the protocol ({bad})"
            _kill(proc)
        finally:
            pending = [*self._waiting.values(), self._ready]
            self._waiting.clear()
            for future in pending:
                if future is not None and not future.done():
                    future.set_exception(WorkerDied())
                    future.exception()  # mark retrieved: nobody may be waiting any more

    async def _dispatch(self, proc: _Process, message: dict[str, Any], size: int) -> None:
        kind = message["type"]
        if kind == "query":
            request = frames.query(message)
            await self._make_room(size)  # at once, unless the fields came in another order
            self._inflight_weight += size
            task = asyncio.create_task(self._answer(proc, request, size))
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

    async def _answer(self, proc: _Process, message: QueryFrame, size: int) -> None:
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
            except Exception as exc:  # a bug behind the handler must fail the call, not hang it
                error = f"Error: llm_query failed: {type(exc).__name__}: {exc}"
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
            async with self._room:
                self._room.notify_all()

    def _cancel_queries(self) -> None:
        """Sub-calls still running when their cell is over (left by a timed-out cell or a thread
        it started) would only hold concurrency slots the next cell needs."""
        for task in list(self._queries):
            task.cancel()


def _watch_exit(popen: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """A future for the process's exit, whoever still holds its pipes (a pidfd on Linux)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        waiting = loop.run_in_executor(None, popen.wait)

        def on_wait(done: asyncio.Future[int]) -> None:
            if not exited.done():
                exited.set_result(done.result())

        waiting.add_done_callback(on_wait)
        return exited

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not exited.done():
            exited.set_result(popen.wait())

    loop.add_reader(pidfd, on_exit)
    return exited


def tree_usage(root: int) -> tuple[int, list[int], int]:
    """Resident bytes of `root` and all its descendants, their pids, and their threads (Linux
    /proc; what cannot be read counts as nothing)."""
    total, threads, pending, seen = 0, 0, [root], set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE
            tasks = os.listdir(f"/proc/{pid}/task")
            threads += len(tasks)
            for task in tasks:
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total, sorted(seen), threads


def _pss(pid: int) -> int:
    """Proportional set size: shared pages split among the processes sharing them. Dearer to
    read than RSS (the kernel walks the page tables), so only read to confirm."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _kill(proc: _Process) -> None:
    """SIGKILL the worker's process group. In the process sandbox the launcher's death also
    ends the worker's PID namespace, and every process in it, wherever their group; so once it
    has exited and been reaped, its pid (which another process may now have) is left alone."""
    if proc.exited.done() and proc.isolated:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.popen.pid, signal.SIGKILL)


async def _keep_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    """Read the worker's stderr as it comes, keeping only its end (for the death note)."""
    while chunk := await stream.read(65536):
        tail += chunk
        del tail[:-STDERR_KEPT]


def _cap(text: str, limit: int) -> str:
    """The worker caps its output; a forged result frame is capped here again."""
    if len(text) <= limit + 200:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [output cut by the host] ...\n{text[-half:]}"


_hidden = False


def hide_environment() -> None:
    """Make this process's /proc entries (environ, mem) unreadable to other processes of the same
    user: a worker outside the process sandbox (`--sandbox none`) could otherwise read the API
    keys from /proc/<host pid>/environ. Linux only; root can still read them, which is one of the
    things the process sandbox's namespaces stop."""
    global _hidden
    if _hidden or not sys.platform.startswith("linux"):
        return
    _hidden = True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


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

"""The REPL: runs cells one at a time in a namespace holding `context` and the scaffold.

Threads: the main thread runs cells one at a time; a reader thread receives frames, queues `exec`
commands for the main thread and hands sub-call replies to whichever thread is waiting for them, so
cells may have many `llm_query` calls in flight (from user threads, or one `llm_query_batched`).
"""

from __future__ import annotations

import ast
import contextlib
import json
import linecache
import os
import queue
import resource
import sys
import threading
import time
import traceback
from types import CodeType
from typing import Any

from rlm_cli.sandbox.worker import confine
from rlm_cli.sandbox.worker.helpers import make_helpers
from rlm_cli.sandbox.worker.load import describe, load_sources
from rlm_cli.sandbox.worker.protocol import (
    HEADER,
    MAX_FRAME,
    PAYLOAD_BYTES,
    QUERY_FRAME_BYTES,
    SCAFFOLD,
    encode_frame,
    json_size,
)


class Connection:
    """Blocking frame I/O over the two protocol file descriptors; sends are thread-safe."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._read = os.fdopen(read_fd, "rb", buffering=0)
        self._write = os.fdopen(write_fd, "wb", buffering=0)
        self._lock = threading.Lock()

    def _read_exactly(self, size: int) -> bytes | None:
        parts = []
        while size:
            chunk = self._read.read(size)
            if not chunk:
                return None
            parts.append(chunk)
            size -= len(chunk)
        return b"".join(parts)

    def recv(self) -> dict[str, Any] | None:
        header = self._read_exactly(HEADER.size)
        if header is None:
            return None
        size = HEADER.unpack(header)[0]
        if size > MAX_FRAME:
            return None
        body = self._read_exactly(size)
        if body is None:
            return None
        message: dict[str, Any] = json.loads(body)
        return message

    def send(self, message: dict[str, Any]) -> None:
        frame = encode_frame(message)
        with self._lock:
            self._write.write(frame)


class CappedOutput:
    """A text sink that keeps the first and last `limit // 2` characters and counts the rest.

    Cells may print gigabytes; the worker must not hold them, and the root model only sees
    a capped view anyway.
    """

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head: list[str] = []
        self._head_len = 0
        self._tail: list[str] = []
        self._tail_len = 0
        self.total = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        written = len(text)
        with self._lock:
            self.total += written
            room = self._half - self._head_len
            if room > 0:
                self._head.append(text[:room])
                self._head_len += min(room, len(text))
                text = text[room:]
            if text:
                self._tail.append(text)
                self._tail_len += len(text)
                if self._tail_len > 4 * self._half:
                    kept = "".join(self._tail)[-self._half :]
                    self._tail, self._tail_len = [kept], len(kept)
        return written

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def getvalue(self) -> str:
        head = "".join(self._head)
        tail = "".join(self._tail)
        if self.total <= 2 * self._half:
            return head + tail
        tail = tail[-self._half :]
        cut = self.total - len(head) - len(tail)
        return (
            f"{head}\n... [{cut:,} of {self.total:,} characters cut from the middle of this "
            f"output; print less, e.g. slices or summaries] ...\n{tail}"
        )


class Worker:
    def __init__(self, conn: Connection, policy: dict[str, Any], isolation: dict[str, Any]) -> None:
        self.conn = conn
        self.policy = policy
        self.isolation = isolation  # the namespaces layer, from confine.isolate
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.output_limit = 20_000
        self.subcall_chars = 100_000  # the worker model's capacity, for chunks() and llm_map()
        self.commands: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.pending: dict[int, tuple[threading.Event, list[Any]]] = {}
        self.pending_lock = threading.Lock()
        self.next_query_id = 0
        self.in_cell = False
        self.final: Any = None
        self.final_source: str | None = None
        self.context: Any = None
        self.scaffold: dict[str, Any] = {}

    # ----- context -----

    def load_context(self, sources: list[dict[str, Any]], shape: str) -> dict[str, Any]:
        """Read every source (see `Source.wire()` on the host) and bind `context`."""
        started = time.perf_counter()
        values, invalid = load_sources(sources)
        if shape == "dict":
            self.context = {
                source["name"]: value for source, value in zip(sources, values, strict=True)
            }
        else:
            self.context = values[0]
        del values
        meta = describe(self.context, sources, invalid)
        meta["load_seconds"] = round(time.perf_counter() - started, 3)
        return meta

    # ----- scaffold functions bound in the namespace -----

    def _query(
        self,
        prompts: list[str],
        model: str | None,
        batched: bool,
        kind: str = "llm",
        contexts: list[Any] | None = None,
    ) -> list[str]:
        """Send the prompts (in frames of at most QUERY_FRAME_BYTES) and wait for every reply."""
        sizes = [
            json_size(prompt) + (0 if contexts is None else json_size(contexts[index]))
            for index, prompt in enumerate(prompts)
        ]
        for prompt, size in zip(prompts, sizes, strict=True):
            if size > PAYLOAD_BYTES:
                raise ValueError(
                    f"a sub-call of {len(prompt):,} characters ({size:,} bytes with its context) "
                    f"is over the {PAYLOAD_BYTES:,} bytes one may carry; send smaller chunks"
                )
        groups: list[tuple[int, int]] = []
        begin, total = 0, 0
        for index, size in enumerate(sizes):
            if index > begin and total + size > QUERY_FRAME_BYTES:
                groups.append((begin, index))
                begin, total = index, 0
            total += size
        groups.append((begin, len(prompts)))
        waits: list[tuple[int, threading.Event, list[Any]]] = []
        with self.pending_lock:
            for _ in groups:
                self.next_query_id += 1
                event = threading.Event()
                slot: list[Any] = []
                waits.append((self.next_query_id, event, slot))
                self.pending[self.next_query_id] = (event, slot)
        try:
            for (query_id, _, _), (a, b) in zip(waits, groups, strict=True):
                self.conn.send(
                    {
                        "type": "query",
                        "id": query_id,
                        "prompts": prompts[a:b],
                        "model": model,
                        "batched": batched,
                        "kind": kind,
                        "contexts": None if contexts is None else contexts[a:b],
                    }
                )
            for _, event, _ in waits:
                event.wait()
        finally:
            with self.pending_lock:
                for query_id, _, _ in waits:
                    self.pending.pop(query_id, None)
        results: list[str] = []
        for _, _, slot in waits:
            if not slot:
                raise RuntimeError("the host has gone away; no sub-calls can be made")
            reply: dict[str, Any] = slot[0]
            if reply.get("error"):
                raise RuntimeError(reply["error"])  # refused before anything was spent (budgets)
            results.extend(reply["results"])
        return results

    def build_scaffold(self) -> None:
        def llm_query(prompt: Any, model: str | None = None) -> str:
            """Ask the worker model one prompt; returns its reply as a string."""
            return self._query([_as_prompt(prompt)], model, batched=False)[0]

        def llm_query_batched(prompts: Any, model: str | None = None) -> list[str]:
            """Ask the worker model many prompts concurrently; replies come back in order."""
            if isinstance(prompts, str):
                raise TypeError("llm_query_batched takes a list of prompts; for one, use llm_query")
            items = [_as_prompt(p) for p in prompts]
            return self._query(items, model, batched=True) if items else []

        def rlm_query(question: Any, context: Any = None, model: str | None = None) -> str:
            """Ask a child RLM: it gets its own REPL whose `context` is `context` (or this one's)."""
            contexts = None if context is None else [_portable(context)]
            return self._query([_as_prompt(question)], model, False, "rlm", contexts)[0]

        def rlm_query_batched(
            questions: Any, contexts: Any = None, model: str | None = None
        ) -> list[str]:
            """Several child RLMs at once; `contexts`, if given, pairs one with each question."""
            if isinstance(questions, str):
                raise TypeError(
                    "rlm_query_batched takes a list of questions; for one, use rlm_query"
                )
            items = [_as_prompt(q) for q in questions]
            given = None if contexts is None else [_portable(c) for c in contexts]
            if given is not None and len(given) != len(items):
                raise ValueError("rlm_query_batched: give one context per question, or none")
            return self._query(items, model, True, "rlm", given) if items else []

        def FINAL(value: Any) -> None:
            """End the run with `value` (converted to str) as the answer."""
            self.final, self.final_source = value, "FINAL"

        def FINAL_VAR(name: Any) -> None:
            """End the run with the value of the variable called `name` as the answer."""
            if not isinstance(name, str):
                # The model passed the value itself; that is what it meant to return.
                self.final, self.final_source = name, "FINAL_VAR"
                return
            key = name.strip().strip("'\"")
            if key not in self.namespace or key in SCAFFOLD:
                names = ", ".join(self.user_variables()) or "(none)"
                raise NameError(
                    f"FINAL_VAR: no variable named {key!r}; it takes the name of a variable as a "
                    f"string, e.g. FINAL_VAR('result'). Variables: {names}. "
                    "To return a value directly, use FINAL(value)."
                )
            self.final, self.final_source = self.namespace[key], "FINAL_VAR"

        def SHOW_VARS() -> None:
            """Print the variables defined so far, with their types and sizes."""
            names = self.user_variables()
            if not names:
                print("No variables yet.")
            for key in names:
                value = self.namespace[key]
                size = f", len {len(value):,}" if hasattr(value, "__len__") else ""
                print(f"{key}: {type(value).__name__}{size}")

        self.scaffold = {
            "context": self.context,
            "llm_query": llm_query,
            "llm_query_batched": llm_query_batched,
            "rlm_query": rlm_query,
            "rlm_query_batched": rlm_query_batched,
            "FINAL": FINAL,
            "FINAL_VAR": FINAL_VAR,
            "SHOW_VARS": SHOW_VARS,
            **make_helpers(lambda: self.context, lambda: self.subcall_chars, self._query),
        }
        self.namespace.update(self.scaffold)

    def user_variables(self) -> list[str]:
        return sorted(
            key
            for key, value in self.namespace.items()
            if not key.startswith("_")
            and key not in SCAFFOLD
            and type(value).__name__ not in ("module", "function", "type")
        )

    # ----- running cells -----

    def run_cell(self, cell_id: int, code: str, cpu_seconds: float) -> dict[str, Any]:
        _arm_cpu_limit(cpu_seconds)
        out = CappedOutput(self.output_limit)
        filename = f"<cell {cell_id}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        error = interrupted = False
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        self.in_cell = True
        try:
            compiled = _compile_cell(code, filename)
            if isinstance(compiled, str):
                error = True
                out.write(compiled)
            else:
                exec(compiled[0], self.namespace)
                if compiled[1] is not None:
                    value = eval(compiled[1], self.namespace)
                    if value is not None:
                        print(repr(value))
        except KeyboardInterrupt:
            interrupted = error = True
            print("KeyboardInterrupt: the cell was interrupted")
        except SystemExit:
            error = True
            print("SystemExit: exiting is not allowed here; the REPL keeps running.")
        except BaseException as exc:
            error = True
            out.write("".join(_cell_traceback(exc).format()))
        finally:
            self.in_cell = False
            sys.stdout, sys.stderr = saved
        self.namespace.update(
            self.scaffold
        )  # rebinding `context` or `FINAL` must not break the run
        answer = self.namespace.get("answer")
        if self.final_source is None and isinstance(answer, dict) and answer.get("ready"):
            self.final, self.final_source = answer.get("content"), "answer"
        final = None if self.final_source is None else _as_answer(self.final)
        output = out.getvalue()
        if final is not None and json_size(final) > PAYLOAD_BYTES:
            output += (
                f"\nValueError: the answer has {len(final):,} characters; at most "
                f"{PAYLOAD_BYTES:,} bytes can be returned. Return a shorter answer or a summary."
            )
            final, self.final_source, error = None, None, True
        if json_size(output) > MAX_FRAME - PAYLOAD_BYTES:  # a large output_limit of wide chars
            output = output[: (MAX_FRAME - PAYLOAD_BYTES) // 8] + "\n... [output cut to fit]"
        result = {
            "type": "result",
            "id": cell_id,
            "output": output,
            "output_chars": out.total,
            "error": error,
            "interrupted": interrupted,
            "final": final,
            "final_source": self.final_source,
        }
        self.final, self.final_source = None, None
        return result

    # ----- frame loop -----

    def read_frames(self) -> None:
        """Reader thread: route replies to waiting sub-calls, queue everything else."""
        while True:
            message = self.conn.recv()
            if message is None:
                break
            if message["type"] == "reply":
                with self.pending_lock:
                    waiting = self.pending.get(message["id"])
                if waiting is not None:
                    waiting[1].append(message)
                    waiting[0].set()
            else:
                self.commands.put(message)
        # The host closed the pipe: it finished, or it died. Either way nobody will read what this
        # process does next, and a cell still running (say, `while True: pass`) must not outlive it.
        os._exit(0)

    def serve(self) -> None:
        init = self.conn.recv()
        if init is None:
            return
        self.output_limit = int(init.get("output_limit", self.output_limit))
        self.subcall_chars = int(init.get("subcall_chars", self.subcall_chars))
        sources = init["sources"]
        if self.policy.get("mode") == "none":
            sandbox = confine.off("sandbox none: cells run with your user's full access")
        else:
            readable = [source["path"] for source in sources]
            sandbox = {**self.isolation, **confine.restrict(self.policy, readable)}
        try:
            meta = self.load_context(sources, init.get("shape", "str"))
        except (OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.conn.send({"type": "init_error", "error": error, "sandbox": sandbox})
            return
        self.build_scaffold()
        self.conn.send({"type": "ready", "meta": meta, "sandbox": sandbox})
        threading.Thread(target=self.read_frames, name="rlm-frames", daemon=True).start()
        while True:
            command = self.commands.get()
            if command is None:
                return
            if command["type"] == "exec":
                cpu = float(command.get("cpu_seconds", 0))
                self.conn.send(self.run_cell(command["id"], command["code"], cpu))


def _compile_cell(code: str, filename: str) -> tuple[CodeType, CodeType | None] | str:
    """The cell's code, its last bare expression apart (its value is echoed); or, when the cell
    is not valid Python, the error as the model should see it: the line of the cell, no frames."""
    try:
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = compile(ast.Expression(tree.body[-1].value), filename, "eval")
            tree.body.pop()
        return compile(tree, filename, "exec"), last
    except (SyntaxError, ValueError) as exc:  # ValueError: a null byte in the code
        where = f"line {exc.lineno} of" if isinstance(exc, SyntaxError) and exc.lineno else "in"
        return (
            "".join(traceback.format_exception_only(exc))
            + f"Nothing in the cell ran: {where} the cell is not valid Python. Fix it and send "
            "the whole cell again.\n"
        )


def _cell_traceback(exc: BaseException) -> traceback.TracebackException:
    """The traceback of an exception a cell raised, as the model should see it: the frames of
    its own code and of the libraries it called, without the worker's (this package's files say
    nothing about the model's code, and show where the sandbox lives)."""
    shown = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    pending = [shown]
    while pending:
        part = pending.pop()
        if id(part) in seen:
            continue
        seen.add(id(part))
        part.stack = traceback.StackSummary.from_list(
            [frame for frame in part.stack if not frame.filename.startswith(_WORKER_DIR)]
        )
        pending += [link for link in (part.__cause__, part.__context__) if link is not None]
    return shown


_WORKER_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _arm_cpu_limit(seconds: float) -> None:
    """This cell may use `seconds` of CPU more than the worker has used so far (SIGXCPU past
    it), within the hard limit set at start-up."""
    if seconds <= 0:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    want = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (want, hard))


def _portable(value: Any) -> Any:
    """A child's context crosses to the host as JSON: str, list, dict and scalars keep their
    shape; anything else becomes its str()."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def _as_prompt(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else str(prompt)


def _as_answer(value: Any) -> str:
    return value if isinstance(value, str) else str(value)

"""The REPL worker: runs inside the sandbox process and holds `context` and the model's variables.

Standard library only, and never imports the rest of rlm_cli: it must start fast and see nothing of
the host (no keys, no settings). The host starts it as `python -I worker.py`, then speaks
length-prefixed JSON frames over the worker's stdin/stdout (see `protocol` in docs/ARCHITECTURE.md).

Threads: the main thread runs cells one at a time; a reader thread receives frames, queues `exec`
commands for the main thread and hands sub-call replies to whichever thread is waiting for them, so
cells may have many `llm_query` calls in flight (from user threads, or one `llm_query_batched`).
"""

from __future__ import annotations

import ast
import codecs
import contextlib
import json
import linecache
import os
import queue
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

HEADER = struct.Struct(">I")
SCAFFOLD = (
    "context",
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "FINAL",
    "FINAL_VAR",
    "SHOW_VARS",
)


def encode_frame(message: dict[str, Any], *, keep_surrogates: bool = False) -> bytes:
    """One frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.

    Lone surrogates (from bytes decoded with surrogateescape) become "?" by default: downstream,
    every writer (stdout, the trace, a provider's HTTP body) needs valid UTF-8. The host keeps
    them (escaped as \\udcXX), because a file name that is not UTF-8 must reach open() intact.
    """
    if keep_surrogates:
        body = json.dumps(message).encode("ascii")
    else:
        body = json.dumps(message, ensure_ascii=False).encode("utf-8", "replace")
    return HEADER.pack(len(body)) + body


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
        body = self._read_exactly(HEADER.unpack(header)[0])
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
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        self.output_limit = 20_000
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
        event = threading.Event()
        slot: list[Any] = []
        with self.pending_lock:
            self.next_query_id += 1
            query_id = self.next_query_id
            self.pending[query_id] = (event, slot)
        try:
            self.conn.send(
                {
                    "type": "query",
                    "id": query_id,
                    "prompts": prompts,
                    "model": model,
                    "batched": batched,
                    "kind": kind,
                    "contexts": contexts,
                }
            )
            event.wait()
        finally:
            with self.pending_lock:
                self.pending.pop(query_id, None)
        if not slot:
            raise RuntimeError("the host has gone away; no sub-calls can be made")
        reply: dict[str, Any] = slot[0]
        if reply.get("error"):
            raise RuntimeError(reply["error"])  # refused before anything was spent (budgets)
        results: list[str] = reply["results"]
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

    def run_cell(self, cell_id: int, code: str) -> dict[str, Any]:
        out = CappedOutput(self.output_limit)
        filename = f"<cell {cell_id}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        error = interrupted = False
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        self.in_cell = True
        try:
            tree = ast.parse(code, filename, "exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body[-1].value)
                tree.body.pop()
            exec(compile(tree, filename, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(last, filename, "eval"), self.namespace)
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
            # Skip this function's own frame so the traceback starts in the cell.
            frames = exc.__traceback__
            cell_frames = None if isinstance(exc, SyntaxError) or frames is None else frames.tb_next
            traceback.print_exception(type(exc), exc, cell_frames, file=out)
        finally:
            self.in_cell = False
            sys.stdout, sys.stderr = saved
        self.namespace.update(
            self.scaffold
        )  # rebinding `context` or `FINAL` must not break the run
        answer = self.namespace.get("answer")
        if self.final_source is None and isinstance(answer, dict) and answer.get("ready"):
            self.final, self.final_source = answer.get("content"), "answer"
        result = {
            "type": "result",
            "id": cell_id,
            "output": out.getvalue(),
            "output_chars": out.total,
            "error": error,
            "interrupted": interrupted,
            "final": None if self.final_source is None else _as_answer(self.final),
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
        try:
            meta = self.load_context(init["sources"], init.get("shape", "str"))
        except (OSError, ValueError) as exc:
            self.conn.send({"type": "init_error", "error": f"{type(exc).__name__}: {exc}"})
            return
        self.build_scaffold()
        self.conn.send({"type": "ready", "meta": meta})
        threading.Thread(target=self.read_frames, name="rlm-frames", daemon=True).start()
        while True:
            command = self.commands.get()
            if command is None or command["type"] == "shutdown":
                return
            if command["type"] == "exec":
                self.conn.send(self.run_cell(command["id"], command["code"]))


def describe(
    context: Any,
    sources: list[dict[str, Any]] | None = None,
    invalid: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What the root model may know about `context`: its shape and sizes, never its content.

    From the sources: the format of structured files (csv, tsv, json, jsonl) with their header or
    first record, the host's token estimate, and how many invalid bytes were replaced.
    """
    meta: dict[str, Any] = {"type": type(context).__name__}
    if isinstance(context, str):
        meta["chars"] = len(context)
        meta["lines"] = context.count("\n") + (0 if context.endswith("\n") or not context else 1)
    elif isinstance(context, dict):
        sizes = [
            (str(k), len(v) if isinstance(v, str) else len(json.dumps(v)))
            for k, v in context.items()
        ]
        meta["chars"] = sum(size for _, size in sizes)
        meta["entries"] = len(sizes)
        meta["files"] = sizes[:1000]
    else:
        meta["chars"] = len(json.dumps(context, ensure_ascii=False))
        if isinstance(context, list):
            meta["entries"] = len(context)
    sources = sources or []
    formats = {
        source["name"]: {"kind": source["kind"], "preview": source.get("preview") or ""}
        for source in sources
        if source.get("kind")
    }
    if formats:
        meta["formats"] = dict(list(formats.items())[:FORMATS_SHOWN])
    if invalid:
        meta["invalid_bytes"] = dict(list(invalid.items())[:FORMATS_SHOWN])
        meta["invalid_bytes_total"] = sum(invalid.values())
    if sources and all(source.get("tokens") is not None for source in sources):
        meta["estimated_tokens"] = sum(int(source["tokens"]) for source in sources)
    return meta


# ----- loading sources (stdlib only; the host's rlm_cli.inputs decided what and how) -----

FORMATS_SHOWN = 100
_REPLACED = "rlm-worker-count-invalid"  # a name of its own: the host imports this module
_replaced = [0]


def _count_replaced(exc: UnicodeError) -> tuple[str, int]:
    """errors="replace" that also counts the bytes it replaced. Only called at invalid bytes: the
    decoders' fast paths for valid text are unaffected."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _replaced[0] += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error(_REPLACED, _count_replaced)


def load_sources(sources: list[dict[str, Any]]) -> tuple[list[Any], dict[str, int]]:
    """Each source's value, in order, and the invalid bytes replaced in each (where any were).

    Memory: one file's bytes and its text exist together only while it is decoded, and the
    bytes are freed at once, so loading peaks near 2x the largest file (for ASCII text) plus
    the texts already loaded. Archives are opened once each; a tar is read in one pass.
    """
    values: list[Any] = [None] * len(sources)
    invalid: dict[str, int] = {}
    by_archive: dict[tuple[str, str], list[int]] = {}
    for index, source in enumerate(sources):
        if source.get("archive"):
            by_archive.setdefault((source["archive"], source["path"]), []).append(index)
            continue
        with _naming(source["path"]):
            values[index] = _load_file(source, invalid)
    for (kind, path), indexes in by_archive.items():
        with _naming(path):
            loaded = _load_archive(kind, path, [sources[i] for i in indexes], invalid)
        for index, value in zip(indexes, loaded, strict=True):
            values[index] = value
    return values, invalid


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Turn whatever reading a source raises into one line naming it (sent as `init_error`)."""
    try:
        yield
    except MemoryError:
        raise ValueError(
            f"{path}: not enough memory to load it; narrow the inputs with --include/--exclude"
        ) from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError, EOFError...
        raise ValueError(f"{path}: cannot load it ({type(exc).__name__}: {exc})") from None


def _load_file(source: dict[str, Any], invalid: dict[str, int]) -> Any:
    path = source["path"]
    if source.get("format") == "json":
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    compression = source.get("compression")
    if compression:
        with _open_compressed(path, compression) as stream:
            data = stream.read()
        return _decode(data, source, invalid)
    # Unbuffered, past the BOM, in one read: FileIO sizes its buffer from fstat, so the bytes
    # are allocated once and never copied; decoding them is the only other pass.
    with open(path, "rb", buffering=0) as handle:
        if source.get("bom"):
            handle.seek(int(source["bom"]))
        data = handle.read()
    return _decode(data, {**source, "bom": 0}, invalid)


def _open_compressed(path: str, kind: str) -> Any:
    if kind == "gzip":
        import gzip

        return gzip.open(path, "rb")
    if kind == "bz2":
        import bz2

        return bz2.open(path, "rb")
    if kind == "xz":
        import lzma

        return lzma.open(path, "rb")
    raise ValueError(f"unknown compression {kind!r}")


def _load_archive(
    kind: str, path: str, members: list[dict[str, Any]], invalid: dict[str, int]
) -> list[str]:
    if kind == "zip":
        import zipfile

        with zipfile.ZipFile(path) as archive:
            return [_decode(archive.read(m["member"]), m, invalid) for m in members]
    if kind != "tar":
        raise ValueError(f"unknown archive kind {kind!r}")
    import tarfile

    wanted = {m["member"]: m for m in members}
    texts: dict[str, str] = {}
    # One streaming pass, in archive order: a compressed tar cannot seek backwards cheaply.
    with tarfile.open(path, mode="r|*") as archive:
        for info in archive:
            member = wanted.get(info.name)
            if member is None or info.name in texts or not info.isfile():
                continue
            stream = archive.extractfile(info)
            if stream is not None:
                texts[info.name] = _decode(stream.read(), member, invalid)
            if len(texts) == len(wanted):
                break
    missing = [name for name in wanted if name not in texts]
    if missing:
        raise ValueError(f"no member {missing[0]!r} in the archive")
    return [texts[m["member"]] for m in members]


def _decode(data: bytes, source: dict[str, Any], invalid: dict[str, int]) -> str:
    encoding = source.get("encoding", "utf-8")
    bom = int(source.get("bom") or 0)
    _replaced[0] = 0
    if bom:
        text = str(memoryview(data)[bom:], encoding, _REPLACED)  # no copy of the bytes
    else:
        text = data.decode(encoding, _REPLACED)
    if _replaced[0]:
        invalid[source["name"]] = _replaced[0]
    return text


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


def main() -> None:
    # The protocol keeps the original stdin/stdout pipes; fd 0 and 1 are pointed elsewhere so that
    # stray writes (os.system, C extensions) cannot corrupt the frames.
    conn = Connection(os.dup(0), os.dup(1))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    worker = Worker(conn)

    def on_sigint(signum: int, frame: object) -> None:
        # The host sends SIGINT to stop a cell that ran past its timeout; between cells it is moot.
        if worker.in_cell:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    worker.serve()


if __name__ == "__main__":
    main()

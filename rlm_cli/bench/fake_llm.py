"""A loopback HTTP server that speaks the OpenAI Chat Completions and Anthropic Messages wire
formats (JSON and SSE streaming), so the real SDKs can be tested without the network.

Requests with a system prompt are root calls and get the next reply from `root`; the others are
sub-calls, answered by `sub(prompt)`. `faults` are consumed first, one per matching request.
Every successful request's usage is recorded in `reported`, to compare with rlm's totals, and
every request in `requests` (method, path, JSON body, headers with lower-case names).

Options make it behave like particular real servers (all off by default):
- `models`: serve only these model names; others get the 404 OpenAI and vLLM send.
- `paths`: serve only these URL paths; others get llama.cpp's 404 ("File Not Found").
- `stream_usage=False`: no usage in OpenAI streams (llama.cpp ignores `stream_options`).
- `max_tokens_param`: the one reply-length parameter honoured ("max_tokens", as llama.cpp;
  it ignores `max_completion_tokens`): a longer reply is cut there, finish reason "length".
- `chunk_delay_s` / `stream_pieces`: slow streams, a delay before each of so many deltas.
- `parallel`: requests handled at once; one more arriving cuts the running streams, as
  llama.cpp does with its default slot (the cut reply is given back and not reported).
- `serve_as`: "llama.cpp", "vllm" or "ollama": the endpoints where that server says what
  window it serves (llama.cpp's /props and /v1/models meta, vLLM's /v1/models max_model_len,
  Ollama's /api/show and /api/ps), with `window` as the figure it enforces (n_ctx,
  max_model_len, num_ctx; None: the field is missing, or Ollama's model file sets no num_ctx),
  `trained_window` as the model's trained length (n_ctx_train, context_length) and
  `loaded_window` as the context of the model Ollama has loaded (None: not loaded).
  `probe_delay_s` delays those replies. Requests that are no model call (these, and any
  other path, which gets a 404) are recorded in `probes`, not in `requests`, each with
  `answered` set once its reply was written.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass
class Fault:
    kind: str  # "status", "cut", "malformed", "delay", "stream_error" (body: the event's data)
    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    target: str = "any"  # "any", "root" or "sub"


@dataclass
class FakeLLM:
    root: list[str]
    sub: Callable[[str], str] = field(default=lambda prompt: "ok")
    api_key: str = "test-key"
    faults: list[Fault] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    reported: list[dict[str, int]] = field(default_factory=list)
    cached_tokens: int = 0  # reported as cache reads on every root call after the first
    latency_s: float = 0.0  # added to every request, as a real model's time to answer
    models: tuple[str, ...] | None = None
    paths: tuple[str, ...] | None = None
    stream_usage: bool = True
    max_tokens_param: str | None = None
    chunk_delay_s: float = 0.0
    stream_pieces: int = 4
    parallel: int | None = None
    cut_streams: int = 0  # streams cut by a request arriving beyond `parallel`
    serve_as: str | None = None  # "llama.cpp", "vllm" or "ollama"
    window: int | None = None
    trained_window: int = 131_072
    loaded_window: int | None = None
    probe_delay_s: float = 0.0
    probes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.serve_as not in (None, *SERVERS):
            raise ValueError(f"serve_as: one of {', '.join(SERVERS)}, not {self.serve_as!r}")
        self._start()

    def _start(self) -> None:
        self._lock = threading.Lock()
        self._root_calls = 0
        self._streaming: list[_Response] = []  # streams being written, for `parallel`
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(
                lambda r, w: _serve(self, r, w), "127.0.0.1", 0, backlog=1024, limit=1 << 24
            )
        )
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for task in pending:  # connections still open (keep-alive clients)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def total_reported(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for usage in self.reported:
            for key, value in usage.items():
                total[key] = total.get(key, 0) + value
        return total

    # ----- decisions, under the lock -----

    def take_fault(self, is_root: bool) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self.faults):
                if fault.target == "any" or (fault.target == "root") == is_root:
                    return self.faults.pop(index)
        return None

    def reply_for(self, is_root: bool, prompt: str) -> tuple[str, bool]:
        """The reply text, and whether this is a later root call (so part of it is cached)."""
        if not is_root:
            return self.sub(prompt), False
        with self._lock:
            self._root_calls += 1
            index = self._root_calls - 1
        if index >= len(self.root):
            return "```repl\nFINAL('out of script')\n```", index > 0
        return self.root[index], index > 0

    def give_back(self, is_root: bool) -> None:
        if is_root:
            with self._lock:
                self._root_calls -= 1

    def arrived(self) -> None:
        """A request came in: beyond `parallel`, it cuts the streams being written."""
        if self.parallel is None:
            return
        with self._lock:
            if len(self._streaming) >= self.parallel:
                for response in self._streaming:
                    response.interrupted = True


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] | None = None  # a streamed (SSE) reply
    cut: bool = False  # close the connection half-way through the stream
    interrupted: bool = False  # cut by another request (`parallel`)
    is_root: bool = False
    usage: dict[str, int] | None = None  # as recorded in `reported`


async def _serve(fake: FakeLLM, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One HTTP/1.1 connection: requests in turn, kept alive until a stream or the client ends it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", 0)))
            method, path = request_line.split(" ")[:2]
            response = await _respond(fake, method, path, headers, body)
            if response.events is None:
                _write_head(
                    writer,
                    response.status,
                    "application/json",
                    len(response.body),
                    response.headers,
                )
                writer.write(response.body)
                await writer.drain()
                continue
            _write_head(writer, response.status, "text/event-stream", None, {"connection": "close"})
            events = (
                response.events[: max(len(response.events) // 2, 1)]
                if response.cut
                else response.events
            )
            with fake._lock:
                fake._streaming.append(response)
            try:
                for event in events:
                    if fake.chunk_delay_s:
                        await asyncio.sleep(fake.chunk_delay_s)
                    if response.interrupted:  # the connection closes with the reply unfinished
                        fake.give_back(response.is_root)
                        with fake._lock:
                            fake.cut_streams += 1
                            if response.usage in fake.reported:
                                fake.reported.remove(response.usage)
                        return
                    writer.write(event.encode())
                    await writer.drain()
            finally:
                with fake._lock:
                    fake._streaming.remove(response)
            return
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return
    finally:
        writer.close()


def _write_head(
    writer: asyncio.StreamWriter,
    status: int,
    ctype: str,
    length: int | None,
    headers: dict[str, str],
) -> None:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"content-type: {ctype}"]
    if length is not None:
        lines.append(f"content-length: {length}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


async def _respond(
    fake: FakeLLM, method: str, path: str, headers: dict[str, str], raw: bytes
) -> _Response:
    if not path.endswith(MODEL_CALL_PATHS):
        return await _probe(fake, method, path, headers, raw)
    fake.arrived()
    if fake.paths is not None and path not in fake.paths:
        fake.requests.append({"method": method, "path": path, "body": None, "headers": headers})
        # llama.cpp's words for a route it does not have.
        body = {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}
        return _Response(404, json.dumps(body).encode())
    body = json.loads(raw)
    anthropic = path.endswith("/messages")
    fake.requests.append({"method": method, "path": path, "body": body, "headers": headers})
    # Anthropic SDKs send x-api-key (1.x) or a bearer token (2.x).
    key = headers.get("x-api-key") or headers.get("authorization", "")
    if key not in (fake.api_key, f"Bearer {fake.api_key}"):
        message = "invalid x-api-key" if anthropic else "Incorrect API key provided"
        return _error(401, message, anthropic)
    if anthropic:
        is_root = "system" in body
        last = body["messages"][-1]["content"]
        prompt = last if isinstance(last, str) else "".join(b["text"] for b in last)
    else:
        is_root = body["messages"][0]["role"] == "system"
        prompt = body["messages"][-1]["content"]
    if fake.models is not None and body.get("model") not in fake.models:
        # OpenAI's and vLLM's words for a model the server does not serve.
        message = f"The model `{body.get('model')}` does not exist."
        return _error(404, message, anthropic)
    if fake.latency_s:
        await asyncio.sleep(fake.latency_s)
    fault = fake.take_fault(is_root)
    if fault is not None and fault.kind == "delay":
        await asyncio.sleep(fault.delay_s)
    elif fault is not None and fault.kind == "status":
        return _error(fault.status, "injected", anthropic, fault.body, fault.headers)
    elif fault is not None and fault.kind == "malformed":
        return _Response(200, b'{"id": "x", "choices": [')
    text, later_root = fake.reply_for(is_root, prompt)
    input_tokens = len(json.dumps(body["messages"])) // 4 + 1
    output_tokens = len(text) // 4 + 1
    finish = "stop"
    limit = body.get(fake.max_tokens_param) if fake.max_tokens_param else None
    if isinstance(limit, int) and output_tokens > limit:
        text, output_tokens, finish = text[: limit * 4], limit, "length"
    cached = min(fake.cached_tokens, input_tokens) if later_root else 0
    model = body["model"]
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_input_tokens": cached,
    }
    if body.get("stream"):
        pieces = _pieces(text, fake.stream_pieces)
        if anthropic:
            events = _anthropic_stream(model, pieces, input_tokens, output_tokens, cached)
        else:
            events = _openai_stream(
                model, pieces, input_tokens, output_tokens, cached, finish, fake.stream_usage
            )
        response = _Response(200, events=events, is_root=is_root, usage=usage)
        if fault is not None and fault.kind == "cut":
            fake.give_back(is_root)  # the client never gets this reply whole
            response.cut = True
            return response
        if fault is not None and fault.kind == "stream_error":
            fake.give_back(is_root)  # half the reply, then the error event in its place
            response.events = events[: max(len(events) // 2, 1)] + [
                _stream_error(anthropic, fault.body)
            ]
            return response
    else:
        if anthropic:
            payload = _anthropic_message(model, text, input_tokens, output_tokens, cached)
        else:
            payload = _openai_completion(model, text, input_tokens, output_tokens, cached, finish)
        response = _Response(200, json.dumps(payload).encode())
    with fake._lock:
        fake.reported.append(usage)
    return response


# The servers `serve_as` can play, and the paths of model calls (everything else is a probe).
SERVERS = ("llama.cpp", "vllm", "ollama")
MODEL_CALL_PATHS = ("/chat/completions", "/messages")


async def _probe(
    fake: FakeLLM, method: str, path: str, headers: dict[str, str], raw: bytes
) -> _Response:
    """A request that is no model call: what the server serves, as `serve_as` would say it."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    record = {"method": method, "path": path, "body": body, "headers": headers, "answered": False}
    with fake._lock:
        fake.probes.append(record)
    payload = _probe_payload(fake, f"{method} {path}", body)
    if fake.probe_delay_s:
        await asyncio.sleep(fake.probe_delay_s)
    record["answered"] = True
    if payload is None:  # llama.cpp's words for a route it does not have
        error = {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}
        return _Response(404, json.dumps(error).encode())
    return _Response(200, json.dumps(payload).encode())


def _probe_payload(fake: FakeLLM, route: str, body: Any) -> dict[str, Any] | None:
    """The JSON the played server answers `route` ("GET /props") with; None for a 404."""
    names, as_, window = fake.models or ("served-model",), fake.serve_as, fake.window
    if route in ("GET /v1/models", "GET /models") and as_ is not None:
        entries: list[dict[str, Any]] = [{"id": n, "object": "model"} for n in names]
        if as_ == "llama.cpp":  # one model, whatever it is asked as; its trained length
            entries = [{"id": "model.gguf", "meta": {"n_ctx_train": fake.trained_window}}]
        elif as_ == "vllm" and window is not None:
            entries = [{**entry, "max_model_len": window} for entry in entries]
        return {"object": "list", "data": entries}
    if route == "GET /props" and as_ == "llama.cpp":
        settings = {} if window is None else {"n_ctx": window}
        return {"default_generation_settings": settings, "total_slots": 1}
    if route == "POST /api/show" and as_ == "ollama":
        asked = body.get("model") if isinstance(body, dict) else None
        if fake.models is not None and asked not in fake.models:
            return None
        parameters = 'stop "<|eot_id|>"' if window is None else f"num_ctx {window}\nstop x"
        info = {"general.architecture": "llama", "llama.context_length": fake.trained_window}
        return {"parameters": parameters, "model_info": info, "details": {"format": "gguf"}}
    if route == "GET /api/ps" and as_ == "ollama":
        ctx = fake.loaded_window
        return {
            "models": [] if ctx is None else [{"name": n, "context_length": ctx} for n in names]
        }
    return None


def _error(
    status: int,
    message: str,
    anthropic: bool,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> _Response:
    if body is None:
        error = {"message": message, "type": "error"}
        body = {"type": "error", "error": error} if anthropic else {"error": error}
    return _Response(status, json.dumps(body).encode(), headers or {})


def _stream_error(anthropic: bool, body: dict[str, Any] | None) -> str:
    """An error event in the middle of a stream, as each API sends one (default: overloaded)."""
    if anthropic:
        data = body or {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
        }
        return f"event: error\ndata: {json.dumps(data)}\n\n"
    data = body or {"error": {"message": "The server had an error", "type": "server_error"}}
    return f"data: {json.dumps(data)}\n\n"


def _pieces(text: str, count: int = 4) -> list[str]:
    """Split a reply into about `count` streamed deltas."""
    size = max(-(-len(text) // max(count, 1)), 1)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _openai_usage(input_tokens: int, output_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _openai_completion(
    model: str, text: str, inp: int, out: int, cached: int, finish: str = "stop"
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": _openai_usage(inp, out, cached),
    }


def _openai_stream(
    model: str,
    pieces: list[str],
    inp: int,
    out: int,
    cached: int,
    finish: str = "stop",
    with_usage: bool = True,
) -> list[str]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in pieces
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if with_usage:
        chunks.append({**base, "choices": [], "usage": _openai_usage(inp, out, cached)})
    return [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]


def _anthropic_usage(inp: int, out: int, cached: int) -> dict[str, int]:
    # Anthropic reports the uncached part of the input separately from cache reads.
    return {
        "input_tokens": inp - cached,
        "output_tokens": out,
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def _anthropic_message(model: str, text: str, inp: int, out: int, cached: int) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _anthropic_usage(inp, out, cached),
    }


def _anthropic_stream(model: str, pieces: list[str], inp: int, out: int, cached: int) -> list[str]:
    start = _anthropic_message(model, "", inp, 1, cached)
    start["content"], start["stop_reason"] = [], None
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    events += [
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
        for piece in pieces
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": out},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events]

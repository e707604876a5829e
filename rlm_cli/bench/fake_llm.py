"""A loopback HTTP server that speaks the OpenAI Chat Completions and Anthropic Messages wire
formats (JSON and SSE streaming), so the real SDKs can be tested without the network.

Requests with a system prompt are root calls and get the next reply from `root`; the others are
sub-calls, answered by `sub(prompt)`. `faults` are consumed first, one per matching request.
Every successful request's usage is recorded in `reported`, to compare with rlm's totals.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Fault:
    kind: str  # "status", "cut", "malformed", "delay"
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

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._root_calls = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
            anthropic = self.path.endswith("/messages")
            fake.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
            # Anthropic SDKs send x-api-key (1.x) or a bearer token (2.x).
            key = self.headers.get("x-api-key") or self.headers.get("authorization", "")
            if key not in (fake.api_key, f"Bearer {fake.api_key}"):
                return self._error(
                    401,
                    "invalid x-api-key" if anthropic else "Incorrect API key provided",
                    anthropic,
                )
            if anthropic:
                is_root = "system" in body
                last = body["messages"][-1]["content"]
                prompt = last if isinstance(last, str) else "".join(b["text"] for b in last)
            else:
                is_root = body["messages"][0]["role"] == "system"
                prompt = body["messages"][-1]["content"]
            if fake.latency_s:
                time.sleep(fake.latency_s)
            fault = fake.take_fault(is_root)
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay_s)
            elif fault is not None and fault.kind == "status":
                return self._error(fault.status, "injected", anthropic, fault.body, fault.headers)
            elif fault is not None and fault.kind == "malformed":
                return self._send(200, b'{"id": "x", "choices": [', "application/json")
            text, later_root = fake.reply_for(is_root, prompt)
            input_tokens = len(json.dumps(body["messages"])) // 4 + 1
            output_tokens = len(text) // 4 + 1
            cached = min(fake.cached_tokens, input_tokens) if later_root else 0
            model = body["model"]
            if body.get("stream"):
                events = (
                    _anthropic_stream(model, text, input_tokens, output_tokens, cached)
                    if anthropic
                    else _openai_stream(model, text, input_tokens, output_tokens, cached)
                )
                self._stream(events, cut=fault is not None and fault.kind == "cut")
                if fault is not None and fault.kind == "cut":
                    fake.give_back(is_root)  # the client never got this reply whole
                    return
            else:
                payload = (
                    _anthropic_message(model, text, input_tokens, output_tokens, cached)
                    if anthropic
                    else _openai_completion(model, text, input_tokens, output_tokens, cached)
                )
                self._send(200, json.dumps(payload).encode(), "application/json")
            fake.reported.append(
                {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "cached_input_tokens": cached,
                }
            )

        def _send(
            self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(
            self,
            status: int,
            message: str,
            anthropic: bool,
            body: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            if body is None:
                error = {"message": message, "type": "error"}
                body = {"type": "error", "error": error} if anthropic else {"error": error}
            self._send(status, json.dumps(body).encode(), "application/json", headers)

        def _stream(self, events: list[str], cut: bool) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            if cut:
                events = events[: max(len(events) // 2, 1)]
            for event in events:
                self.wfile.write(event.encode())
                self.wfile.flush()
            self.close_connection = True

    return Handler


def _pieces(text: str) -> list[str]:
    """Split a reply into a few streamed deltas."""
    size = max(len(text) // 4, 1)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _openai_usage(input_tokens: int, output_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _openai_completion(model: str, text: str, inp: int, out: int, cached: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": _openai_usage(inp, out, cached),
    }


def _openai_stream(model: str, text: str, inp: int, out: int, cached: int) -> list[str]:
    base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for piece in _pieces(text)
    ]
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
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


def _anthropic_stream(model: str, text: str, inp: int, out: int, cached: int) -> list[str]:
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
        for piece in _pieces(text)
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

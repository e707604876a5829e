"""The wire protocol between the host and the worker: frames, their shapes and their limits.

A frame is a 4-byte big-endian length, then that many bytes of UTF-8 JSON holding one object with
a `type`. The host writes to the worker's stdin and reads its stdout. Standard library only: the
worker imports this module, and so does the host, which checks every frame against these shapes
(`rlm_cli.sandbox.frames`) because the worker runs code a model wrote.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Literal, TypedDict

HEADER = struct.Struct(">I")

# The largest frame either side accepts. Everything big fits below it: a cell's output is capped
# by `output_limit` (and cut further to fit), an answer and one sub-call prompt may take at most
# PAYLOAD_BYTES in JSON, and a sub-call batch goes as frames of at most QUERY_FRAME_BYTES. A
# worker that sends more is replaced, so the host never holds more.
MAX_FRAME = 16 * 1024 * 1024
PAYLOAD_BYTES = 12 * 1024 * 1024
QUERY_FRAME_BYTES = 4 * 1024 * 1024

# The names the worker binds in every cell's namespace (and re-binds after each cell).
SCAFFOLD = (
    "context",
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "FINAL",
    "FINAL_VAR",
    "SHOW_VARS",
    "grep",
    "lines",
    "chunks",
    "llm_map",
)

# The layers of the sandbox, each reported as active or not (`Layer`) by every worker at start.
LAYERS = ("namespaces", "landlock", "privileges", "seccomp", "limits", "terminal")

FinalSource = Literal["FINAL", "FINAL_VAR", "answer"]
QueryKind = Literal["llm", "rlm"]


class SourceWire(TypedDict, total=False):
    """One source to load (`Source.wire()` on the host). `name`, `path`, `size`, `encoding` and
    `format` are always there."""

    name: str
    path: str
    size: int
    encoding: str
    format: Literal["text", "json"]
    bom: int
    compression: Literal["gzip", "bz2", "xz"]
    archive: Literal["zip", "tar"]
    member: str
    kind: str
    preview: str
    tokens: int


class Layer(TypedDict):
    """One layer of the sandbox as the worker set it up: active or not, and why."""

    active: bool
    detail: str


def layer(active: bool, detail: str) -> Layer:
    """One layer's report (the worker's confinement steps each return one)."""
    return {"active": active, "detail": detail}


# host -> worker


class InitFrame(TypedDict):
    type: Literal["init"]
    sources: list[SourceWire]
    shape: Literal["single", "dict"]
    output_limit: int
    subcall_chars: int  # the most characters one sub-call prompt may hold (chunks, llm_map)


class ExecFrame(TypedDict):
    type: Literal["exec"]
    id: int
    code: str
    cpu_seconds: float


class ReplyFrame(TypedDict, total=False):
    type: Literal["reply"]
    id: int
    results: list[str]
    error: str  # refused before anything was spent (a budget): raised in the calling code


# worker -> host


class ReadyFrame(TypedDict):
    type: Literal["ready"]
    meta: dict[str, Any]
    sandbox: dict[str, Layer]


class InitErrorFrame(TypedDict):
    type: Literal["init_error"]
    error: str
    sandbox: dict[str, Layer]


class QueryFrame(TypedDict):
    type: Literal["query"]
    id: int
    prompts: list[str]
    model: str | None
    batched: bool
    kind: QueryKind
    contexts: list[Any] | None


class ResultFrame(TypedDict):
    type: Literal["result"]
    id: int
    output: str
    output_chars: int
    error: bool
    interrupted: bool
    final: str | None
    final_source: FinalSource | None


def json_size(value: Any) -> int:
    """Bytes `value` takes in a frame (as encode_frame writes it)."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "replace"))


def encode_frame(message: Any, *, keep_surrogates: bool = False) -> bytes:
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

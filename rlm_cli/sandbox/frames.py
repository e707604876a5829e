"""The host's check of every frame the worker sends: the worker runs model-written code, so each
frame may be forged. A frame that breaks a rule raises BadFrame, and the host replaces the worker.
"""

from __future__ import annotations

import json
import re
from typing import Any, cast

from rlm_cli.sandbox.worker.protocol import (
    LAYERS,
    InitErrorFrame,
    Layer,
    QueryFrame,
    ReadyFrame,
    ResultFrame,
    layer,
)

# Prompts in one query frame (the worker sends more as several frames), and characters of the
# short strings a frame may carry (a model name, an error line, a layer's detail).
MAX_PROMPTS = 100_000
SHORT = 2_000
FINAL_SOURCES = (None, "FINAL", "FINAL_VAR", "answer")


# What json.loads builds from a frame, at most: 4 bytes a character (a str holding one astral
# character stores every character in 4) and, per container and element, a Python object.
# 3 bytes of `[],` become a 64-byte list: a 16 MiB frame of them would be 350 MB.
PER_CHAR, PER_ELEMENT, PER_LIST, PER_DICT = 4, 64, 72, 232
MAX_WEIGHT = 64 * 1024 * 1024
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


class BadFrame(Exception):
    """A frame the host will not act on; the message says what was wrong with it."""


def weight(body: bytes) -> int:
    """An upper bound of the memory parsing `body` takes, read without parsing it."""
    structure = body
    if body.count(b",") + body.count(b"[") + body.count(b"{") > 50_000:
        structure = _STRING.sub(b'""', body)  # brackets inside strings are text, not objects
    return (
        PER_CHAR * len(body)
        + PER_ELEMENT * structure.count(b",")
        + PER_LIST * structure.count(b"[")
        + PER_DICT * structure.count(b"{")
    )


def parse(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        raise BadFrame("a frame that is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise BadFrame("a frame that is not an object with a type")
    return message


def query(message: dict[str, Any]) -> QueryFrame:
    _keys(message, {"type", "id", "prompts", "model", "batched", "kind", "contexts"})
    _int(message, "id")
    prompts = message["prompts"]
    if not isinstance(prompts, list) or not 1 <= len(prompts) <= MAX_PROMPTS:
        raise BadFrame(f"query: prompts must be a list of 1 to {MAX_PROMPTS:,} strings")
    if not all(isinstance(p, str) for p in prompts):
        raise BadFrame("query: each prompt must be a string")
    _optional_str(message, "model")
    _bool(message, "batched")
    if message["kind"] not in ("llm", "rlm"):
        raise BadFrame("query: kind must be llm or rlm")
    contexts = message["contexts"]
    if contexts is not None and (not isinstance(contexts, list) or len(contexts) != len(prompts)):
        raise BadFrame("query: contexts must be null or one per prompt")
    return cast(QueryFrame, message)


def result(message: dict[str, Any], cell: int | None) -> ResultFrame:
    _keys(
        message,
        {"type", "id", "output", "output_chars", "error", "interrupted", "final", "final_source"},
    )
    if _int(message, "id") != cell:
        raise BadFrame(f"result: for cell {message['id']}, but cell {cell} is running")
    if not isinstance(message["output"], str):
        raise BadFrame("result: output must be a string")
    _int(message, "output_chars")
    _bool(message, "error")
    _bool(message, "interrupted")
    final, source = message["final"], message["final_source"]
    if source not in FINAL_SOURCES or (final is None) != (source is None):
        raise BadFrame("result: final and final_source do not match")
    if final is not None and not isinstance(final, str):
        raise BadFrame("result: the answer must be a string")
    return cast(ResultFrame, message)


def ready(message: dict[str, Any]) -> ReadyFrame:
    _keys(message, {"type", "meta", "sandbox"})
    meta = message["meta"]
    if not isinstance(meta, dict) or not isinstance(meta.get("type"), str):
        raise BadFrame("ready: meta must be an object with a type")
    if not isinstance(meta.get("chars"), int) or isinstance(meta["chars"], bool):
        raise BadFrame("ready: meta.chars must be an integer")
    message["sandbox"] = layers(message["sandbox"])
    return cast(ReadyFrame, message)


def init_error(message: dict[str, Any]) -> InitErrorFrame:
    _keys(message, {"type", "error", "sandbox"})
    if not isinstance(message["error"], str):
        raise BadFrame("init_error: error must be a string")
    message["error"] = message["error"][:SHORT]
    message["sandbox"] = layers(message["sandbox"])
    return cast(InitErrorFrame, message)


def layers(report: Any) -> dict[str, Layer]:
    """The layer report in LAYERS order; a layer the worker did not report counts as inactive."""
    if not isinstance(report, dict):
        raise BadFrame("the sandbox report must be an object")
    checked: dict[str, Layer] = {}
    for name in LAYERS:
        entry = report.get(name)
        if isinstance(entry, dict) and isinstance(entry.get("detail"), str):
            checked[name] = layer(entry.get("active") is True, entry["detail"][:SHORT])
        else:
            checked[name] = layer(False, "not reported")
    return checked


def _keys(message: dict[str, Any], expected: set[str]) -> None:
    if set(message) != expected:
        odd = sorted(set(message) ^ expected)
        raise BadFrame(f"{message['type']}: wrong fields {', '.join(map(str, odd))[:SHORT]}")


def _int(message: dict[str, Any], key: str) -> int:
    value = message[key]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadFrame(f"{message['type']}: {key} must be a non-negative integer")
    return value


def _bool(message: dict[str, Any], key: str) -> None:
    if not isinstance(message[key], bool):
        raise BadFrame(f"{message['type']}: {key} must be true or false")


def _optional_str(message: dict[str, Any], key: str) -> None:
    value = message[key]
    if value is not None and (not isinstance(value, str) or len(value) > SHORT):
        raise BadFrame(f"{message['type']}: {key} must be null or a short string")

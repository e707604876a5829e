"""Reading a model server's streams: server-sent events in whatever pieces they arrive, error
events in the middle of a reply, and what is never done with the key (redirects followed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rlm_cli.bench.fake_llm import FakeLLM, Fault
from rlm_cli.errors import ContextLengthError, ProviderAuthError, ProviderError, RlmError
from rlm_cli.providers.anthropic_provider import AnthropicProvider
from rlm_cli.providers.base import Completion, Message, ModelRequest
from rlm_cli.providers.catalog import Catalog
from rlm_cli.providers.connection import Connection
from rlm_cli.providers.http import MAX_EVENT_BYTES, _SSEReader
from rlm_cli.providers.openai_provider import OpenAIProvider
from rlm_cli.providers.wire import WireProvider

STREAM = (
    b": keep-alive\r\n\r\n"
    b'event: message_start\r\ndata: {"a":\r\n\r\n'
    b"data: one\ndata: two\n\n"
    + "data: caf\u00e9 \u2713\n\n".encode()
    + b"data: [DONE]"  # the last event, the stream closed without its blank line
)
EVENTS = [
    ("message_start", '{"a":'),
    (None, "one\ntwo"),
    (None, "caf\u00e9 \u2713"),
    (None, "[DONE]"),
]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_events_are_read_whatever_pieces_the_bytes_come_in(size: int) -> None:
    reader = _SSEReader("p")
    events = []
    for start in range(0, len(STREAM), size):
        events += reader.feed(STREAM[start : start + size])
    assert events + reader.end() == EVENTS


def test_an_event_without_end_is_not_read_into_memory_without_end() -> None:
    reader = _SSEReader("p (http://127.0.0.1:1)")
    with pytest.raises(ProviderError, match=r"127.0.0.1:1.*over 16 MiB"):
        for _ in range(MAX_EVENT_BYTES // 2**20 + 2):
            reader.feed(b"x" * 2**20)  # no newline at all
    reader = _SSEReader("p")
    with pytest.raises(ProviderError, match="over 16 MiB"):
        for _ in range(MAX_EVENT_BYTES // 2**20 + 2):
            reader.feed(b"data: " + b"x" * 2**20 + b"\n")  # lines, but the event never ends


BASE_PATH = {OpenAIProvider: "/v1", AnthropicProvider: ""}
REQUEST = ModelRequest(
    model="m", messages=(Message("system", "s"), Message("user", "q")), purpose="root"
)


def stream_through(
    cls: type[WireProvider], fake: FakeLLM, retries: int = 2
) -> tuple[Completion | RlmError, list[str]]:
    """One streamed call against `fake`: the completion (or the error it ended with), and the
    reasons of the retries on the way."""
    conn = Connection(
        name="p", base_url=fake.url + BASE_PATH[cls], key_env="K", api_key=fake.api_key,
        local=True, catalog=Catalog(), max_retries=retries,
    )  # fmt: skip
    provider = cls(conn)
    retried: list[str] = []
    request = ModelRequest(
        REQUEST.model, REQUEST.messages, "root", on_retry=lambda n, d, e: retried.append(str(e))
    )

    async def run() -> Completion | RlmError:
        try:
            return await provider.stream(request, lambda text: None)
        except RlmError as exc:
            return exc
        finally:
            await provider.aclose()

    return asyncio.run(run()), retried


@pytest.mark.parametrize("cls", [OpenAIProvider, AnthropicProvider])
def test_an_error_event_mid_stream_is_retried(cls: type[WireProvider]) -> None:
    # The fake gives the cut reply back: the retry gets it again, whole.
    with FakeLLM(["the whole reply"], faults=[Fault("stream_error")]) as fake:
        outcome, retried = stream_through(cls, fake)
    assert isinstance(outcome, Completion), outcome
    assert outcome.text == "the whole reply"  # not half of it glued to the whole
    assert len(retried) == 1
    assert ("Overloaded" if cls is AnthropicProvider else "The server had an error") in retried[0]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"type": "invalid_request_error", "message": "prompt is too long"}, ContextLengthError),
        ({"type": "authentication_error", "message": "invalid key"}, ProviderAuthError),
        ({"type": "invalid_request_error", "message": "bad field"}, ProviderError),
    ],
)
def test_an_anthropic_error_event_means_what_its_type_means(
    error: dict[str, Any], expected: type[RlmError]
) -> None:
    body = {"type": "error", "error": error}
    with FakeLLM(["never whole"], faults=[Fault("stream_error", body=body)]) as fake:
        outcome, retried = stream_through(AnthropicProvider, fake)
    assert type(outcome) is expected and not retried, outcome


def test_an_openai_context_length_error_event_is_not_retried() -> None:
    body = {"error": {"message": "This model's maximum context length is 8192 tokens"}}
    with FakeLLM(["never whole"], faults=[Fault("stream_error", body=body)]) as fake:
        outcome, retried = stream_through(OpenAIProvider, fake)
    assert isinstance(outcome, ContextLengthError) and not retried


@pytest.mark.parametrize("cls", [OpenAIProvider, AnthropicProvider])
def test_a_redirect_is_not_followed_with_the_key(cls: type[WireProvider]) -> None:
    with FakeLLM(["elsewhere"]) as other:
        moved = Fault("status", status=307, headers={"location": other.url + "/v1/messages"})
        with FakeLLM(["here"], faults=[moved]) as fake:
            outcome, retried = stream_through(cls, fake)
    assert isinstance(outcome, ProviderError) and "HTTP 307" in str(outcome), outcome
    assert other.requests == [] and not retried

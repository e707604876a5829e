"""The lean HTTP path (rlm_cli/providers/http.py) against the SDKs it stands in for.

For the same ModelRequest, each call, streamed and plain, sends what the vendor SDK's own request
sends (method, path, JSON body, auth and content headers), both recorded by the loopback FakeLLM;
and reads the same reply out of the same bytes (text, usage, finish reason, request id). An SDK
upgrade that moves its endpoint, its headers, its auth or its reading of a stream shows here,
not as 401s in a fan-out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rlm_cli.bench.fake_llm import FakeLLM
from rlm_cli.providers.anthropic_provider import AnthropicProvider
from rlm_cli.providers.base import Message, ModelRequest, Purpose, Usage
from rlm_cli.providers.catalog import Catalog
from rlm_cli.providers.connection import Connection
from rlm_cli.providers.openai_provider import OpenAIProvider
from rlm_cli.providers.wire import WireProvider

# The headers that decide whether and how the server reads the request.
CONTRACT_HEADERS = (
    "authorization",
    "x-api-key",
    "anthropic-version",
    "openai-organization",
    "openai-project",
    "content-type",
    "accept",
)
# The URL path under the fake's root each kind is given: what a user passes as --base-url.
BASE_PATH = {OpenAIProvider: "/v1", AnthropicProvider: ""}


def sdk_client(cls: type[WireProvider], conn: Connection) -> Any:
    """The vendor SDK's async client for the provider's connection, as rlm once built it."""
    options = {
        "api_key": conn.api_key or "not-needed",
        "base_url": conn.base_url,
        "max_retries": 0,
        "timeout": conn.timeout_s,
    }
    if cls is OpenAIProvider:
        import openai

        return openai.AsyncOpenAI(**options)
    import anthropic

    return anthropic.AsyncAnthropic(**options)


async def sdk_call(cls: type[WireProvider], client: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The SDK's own request for `params` (our request body), and what it read from the reply:
    the text, the usage block as sent, the finish reason and the request id."""
    if cls is OpenAIProvider:
        reply = await client.chat.completions.create(**params)
        if not params.get("stream"):
            choice = reply.choices[0]
            usage = reply.usage.model_dump()
            return _read(choice.message.content, usage, choice.finish_reason, reply.id)
        parts, usage, finish, rid = [], None, None, None
        async with reply as chunks:
            async for chunk in chunks:
                rid = rid or chunk.id
                usage = chunk.usage.model_dump() if chunk.usage else usage
                for choice in chunk.choices:
                    parts.append(choice.delta.content or "")
                    finish = choice.finish_reason or finish
        return _read("".join(parts), usage, finish, rid)
    # Anthropic's messages.create no longer declares `temperature`: it goes in the body as is.
    body_only = {k: v for k, v in params.items() if k == "temperature"}
    declared = {k: v for k, v in params.items() if k not in body_only}
    reply = await client.messages.create(**declared, extra_body=body_only or None)
    if not params.get("stream"):
        text = "".join(b.text for b in reply.content if b.type == "text")
        return _read(text, reply.usage.model_dump(), reply.stop_reason, reply.id)
    parts, start, out, stop, rid = [], {}, None, None, None
    async with reply as events:
        async for event in events:
            if event.type == "message_start":
                rid, start = event.message.id, event.message.usage.model_dump()
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                parts.append(event.delta.text)
            elif event.type == "message_delta":
                stop, out = event.delta.stop_reason, event.usage.output_tokens
    return _read("".join(parts), {**start, "output_tokens": out}, stop, rid)


def _read(text: str | None, usage: Any, finish: str | None, rid: str | None) -> dict[str, Any]:
    return {"text": text or "", "usage": usage, "finish": finish, "id": rid}


def ours_read(completion: Any) -> dict[str, Any]:
    """Our Completion in the terms `sdk_call` reads the SDK's in (usage as ours counts it)."""
    return {
        "text": completion.text,
        "usage": completion.usage,
        "finish": completion.finish_reason,
        "id": completion.request_id,
    }


def as_ours(cls: type[WireProvider], usage: dict[str, Any]) -> Usage:
    """The SDK's usage block counted our way (rlm_cli/providers/*_provider.py `_usage`)."""
    from rlm_cli.providers import anthropic_provider, openai_provider

    if cls is OpenAIProvider:
        counted = openai_provider._usage(usage)
        assert counted is not None
        return counted
    return anthropic_provider._usage(usage)


def both_ways(
    cls: type[WireProvider], request: ModelRequest, stream: bool, **settings: Any
) -> tuple[tuple[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]:
    """(our request, the SDK's request) as the fake recorded them, and (what we read, what the
    SDK read) from the same reply."""
    with FakeLLM(["root reply is here"] * 2, lambda prompt: "sub reply here") as fake:
        conn = Connection(
            name="p", base_url=fake.url + BASE_PATH[cls], key_env=None, api_key=fake.api_key,
            local=True, catalog=Catalog(), **settings,
        )  # fmt: skip
        provider = cls(conn)
        pieces: list[str] = []

        async def run() -> tuple[Any, dict[str, Any]]:
            client = sdk_client(cls, provider._conn)
            try:
                if stream:
                    completion = await provider.stream(request, pieces.append)
                    params = {**provider._params(request), "stream": True}
                    if cls is OpenAIProvider:
                        params["stream_options"] = {"include_usage": True}
                else:
                    completion = await provider.complete(request)
                    params = provider._params(request)
                return completion, await sdk_call(cls, client, params)
            finally:
                await provider.aclose()
                await client.close()

        completion, theirs = asyncio.run(run())
        ours_request, sdk_request = fake.requests
    if stream:
        assert "".join(pieces) == completion.text  # the text reached the caller as it came
    ours = ours_read(completion)
    theirs["usage"] = as_ours(cls, theirs["usage"])
    return (ours_request, sdk_request), (ours, theirs)


REQUESTS = {
    "sub": ModelRequest(model="gpt-4o", messages=(Message("user", "find it"),), purpose="sub"),
    "root": ModelRequest(
        model="claude-sonnet-4-5",
        messages=(Message("system", "you are"), Message("user", "the question")),
        purpose="root",
    ),
}


@pytest.mark.parametrize("cls", [OpenAIProvider, AnthropicProvider])
@pytest.mark.parametrize("purpose", ["sub", "root"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    "settings",
    [{}, {"temperature": 0.3, "max_output_tokens": 64}, {"reasoning_effort": "low"}],
)
def test_we_send_and_read_what_the_sdk_sends_and_reads(
    cls: type[WireProvider], purpose: Purpose, stream: bool, settings: dict[str, Any]
) -> None:
    (ours, sdk), (read, sdk_read) = both_ways(cls, REQUESTS[purpose], stream, **settings)
    assert ours["method"] == sdk["method"] == "POST"
    assert ours["path"] == sdk["path"]
    assert ours["body"] == sdk["body"]
    assert ("stream" in ours["body"]) is stream
    for header in CONTRACT_HEADERS:
        assert ours["headers"].get(header) == sdk["headers"].get(header), header
    # What the contract is about is there: the body's type and the key, in the SDK's own way.
    assert sdk["headers"]["content-type"] == "application/json"
    auth = sdk["headers"].get("authorization") or sdk["headers"].get("x-api-key")
    assert auth is not None and "test-key" in auth
    assert ours["headers"]["user-agent"].startswith("rlm/")
    assert read == sdk_read
    assert read["text"] in ("root reply is here", "sub reply here") and read["finish"]


def test_the_organization_and_project_reach_the_server_as_the_sdk_sends_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-1")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-2")
    (ours, sdk), _ = both_ways(OpenAIProvider, REQUESTS["sub"], stream=True)
    assert ours["headers"]["openai-organization"] == sdk["headers"]["openai-organization"]
    assert ours["headers"]["openai-project"] == sdk["headers"]["openai-project"] == "proj-2"


def test_settings_reach_the_body() -> None:
    # The body is compared key for key above; here, that the settings are in it at all.
    (ours, _), _ = both_ways(
        AnthropicProvider, REQUESTS["root"], False, temperature=0.3, max_output_tokens=64
    )
    assert ours["path"] == "/v1/messages"
    assert ours["body"]["temperature"] == 0.3 and ours["body"]["max_tokens"] == 64
    (ours, _), _ = both_ways(OpenAIProvider, REQUESTS["sub"], True, temperature=0.3)
    assert ours["path"] == "/v1/chat/completions"
    assert ours["body"]["temperature"] == 0.3

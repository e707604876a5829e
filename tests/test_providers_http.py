"""The lean HTTP path (rlm_cli/providers/http.py) against the SDK it stands in for: for the same
ModelRequest, a non-streamed call sends what the SDK's own request would send (method, path,
JSON body, auth and content headers), both recorded by the loopback FakeLLM. An SDK upgrade
that moves its endpoint, its headers or its auth shows here, not as 401s in a fan-out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rlm_cli.bench.fake_llm import FakeLLM
from rlm_cli.providers.anthropic_provider import AnthropicProvider
from rlm_cli.providers.base import Message, ModelRequest, Purpose
from rlm_cli.providers.catalog import Catalog
from rlm_cli.providers.connection import Connection
from rlm_cli.providers.openai_provider import OpenAIProvider
from rlm_cli.providers.sdk import SDKProvider

# The headers that decide whether and how the server reads the request.
CONTRACT_HEADERS = ("authorization", "x-api-key", "anthropic-version", "content-type", "accept")
# The URL path under the fake's root each kind is given: what a user passes as --base-url.
BASE_PATH = {OpenAIProvider: "/v1", AnthropicProvider: ""}


def _lean_and_sdk(
    cls: type[SDKProvider], request: ModelRequest, **settings: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The requests the fake recorded: one sent by `complete` (the lean path), then one sent by
    the SDK for the same parameters, through the provider's own `_sdk_create`."""
    with FakeLLM(["root reply"] * 2, lambda prompt: "sub reply") as fake:
        conn = Connection(
            name="p", base_url=fake.url + BASE_PATH[cls], key_env=None, api_key=fake.api_key,
            local=True, catalog=Catalog(), **settings,
        )  # fmt: skip
        provider = cls(conn)

        async def both() -> None:
            try:
                completion = await provider.complete(request)
                assert completion.text in ("root reply", "sub reply")
                assert provider._sdk_client is not None  # made by `complete`, for its headers
                client = provider._sdk_client.client
                await provider._sdk_create(client, provider._params(request))
            finally:
                await provider.aclose()

        asyncio.run(both())
        lean, sdk = fake.requests
    return lean, sdk


REQUESTS = {
    "sub": ModelRequest(model="gpt-4o", messages=(Message("user", "find it"),), purpose="sub"),
    "root": ModelRequest(
        model="claude-sonnet-4-5",
        messages=(Message("system", "you are"), Message("user", "the question")),
        purpose="root",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("cls", [OpenAIProvider, AnthropicProvider])
@pytest.mark.parametrize("purpose", ["sub", "root"])
@pytest.mark.parametrize(
    "settings",
    [{}, {"temperature": 0.3, "max_output_tokens": 64}, {"reasoning_effort": "low"}],
)
def test_the_lean_path_sends_what_the_sdk_sends(
    cls: type[SDKProvider], purpose: Purpose, settings: dict[str, Any]
) -> None:
    lean, sdk = _lean_and_sdk(cls, REQUESTS[purpose], **settings)
    assert lean["method"] == sdk["method"] == "POST"
    assert lean["path"] == sdk["path"]
    assert lean["body"] == sdk["body"]
    assert "stream" not in lean["body"]
    for header in CONTRACT_HEADERS:
        assert lean["headers"].get(header) == sdk["headers"].get(header), header
    # What the contract is about is there: the body's type and the key, in the SDK's own way.
    assert sdk["headers"]["content-type"] == "application/json"
    auth = sdk["headers"].get("authorization") or sdk["headers"].get("x-api-key")
    assert auth is not None and "test-key" in auth


def test_settings_reach_both_paths_alike() -> None:
    # The body is compared key for key above; here, that the settings are in it at all.
    lean, _sdk = _lean_and_sdk(
        AnthropicProvider, REQUESTS["root"], temperature=0.3, max_output_tokens=64
    )
    assert lean["path"] == "/v1/messages"
    assert lean["body"]["temperature"] == 0.3 and lean["body"]["max_tokens"] == 64
    lean, _sdk = _lean_and_sdk(OpenAIProvider, REQUESTS["sub"], temperature=0.3)
    assert lean["path"] == "/v1/chat/completions"
    assert lean["body"]["temperature"] == 0.3

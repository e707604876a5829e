"""What a provider declares about itself: whether its replies may be cached, whether it takes a
key, and its cache identity (everything of its own connection that changes a reply)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rlm_cli.providers.anthropic_provider import AnthropicProvider
from rlm_cli.providers.catalog import Catalog
from rlm_cli.providers.connection import Connection
from rlm_cli.providers.openai_provider import OpenAIProvider
from rlm_cli.providers.scripted import ScriptedProvider
from rlm_cli.providers.wire import WireProvider

SECRET = "sk-identity-secret-123456"
SDK_CLASSES: list[type[WireProvider]] = [OpenAIProvider, AnthropicProvider]


def _conn(base_url: str | None = "http://127.0.0.1:9/v1", **settings: Any) -> Connection:
    return Connection(
        name=settings.pop("name", "openai"), base_url=base_url, key_env="SOME_KEY",
        api_key=SECRET, local=False, catalog=Catalog(), **settings,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _no_endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for cls in SDK_CLASSES:
        monkeypatch.delenv(cls.base_url_env, raising=False)


@pytest.mark.parametrize("cls", SDK_CLASSES)
def test_providers_on_different_servers_have_different_identities(
    cls: type[WireProvider],
) -> None:
    a = cls(_conn("http://127.0.0.1:9001/v1")).cache_identity()
    b = cls(_conn("http://127.0.0.1:9002/v1")).cache_identity()
    assert a != b
    assert a["base_url"] == "http://127.0.0.1:9001/v1"
    assert b["base_url"] == "http://127.0.0.1:9002/v1"


@pytest.mark.parametrize("cls", SDK_CLASSES)
def test_the_same_settings_give_equal_identities(cls: type[WireProvider]) -> None:
    settings = {"temperature": 0.2, "reasoning_effort": "low", "max_output_tokens": 100}
    assert cls(_conn(**settings)).cache_identity() == cls(_conn(**settings)).cache_identity()
    # A trailing slash names the same endpoint.
    slash = cls(_conn("http://127.0.0.1:9/v1/", **settings)).cache_identity()
    assert slash == cls(_conn(**settings)).cache_identity()


@pytest.mark.parametrize(
    "setting",
    [{"temperature": 0.7}, {"reasoning_effort": "high"}, {"max_output_tokens": 50},
     {"name": "openrouter"}],
)  # fmt: skip
def test_each_setting_applied_to_requests_changes_the_identity(setting: dict[str, Any]) -> None:
    assert (
        OpenAIProvider(_conn(**setting)).cache_identity()
        != OpenAIProvider(_conn()).cache_identity()
    )


@pytest.mark.parametrize("cls", SDK_CLASSES)
def test_no_key_is_in_the_identity(cls: type[WireProvider]) -> None:
    identity = cls(_conn(temperature=0.1)).cache_identity()
    text = json.dumps(identity)  # JSON data: it becomes part of a cache key
    assert SECRET not in text and "SOME_KEY" not in text
    assert not {k for k in identity if "key" in k.lower() or "auth" in k.lower()}


@pytest.mark.slow
@pytest.mark.parametrize("cls", SDK_CLASSES)
def test_no_base_url_is_the_endpoint_the_sdk_itself_would_use(
    cls: type[WireProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK's own resolution, read off its client: if an SDK upgrade moves its default or
    # its variable, the identity (and the URL handed to the SDK) must follow.
    import anthropic
    import openai

    client_class = openai.AsyncOpenAI if cls is OpenAIProvider else anthropic.AsyncAnthropic
    ours = cls(_conn(None)).cache_identity()["base_url"]
    assert ours == cls.default_base_url
    assert str(client_class(api_key="k").base_url).rstrip("/") == cls.default_base_url
    monkeypatch.setenv(cls.base_url_env, "http://127.0.0.1:9999/x")
    assert str(client_class(api_key="k").base_url).rstrip("/") == "http://127.0.0.1:9999/x"
    assert cls(_conn(None)).cache_identity()["base_url"] == "http://127.0.0.1:9999/x"
    # A base URL given wins over the variable, as in the SDK.
    assert cls(_conn("http://127.0.0.1:1/v1")).cache_identity()["base_url"] == (
        "http://127.0.0.1:1/v1"
    )


def test_cacheable_and_needs_key_are_declared_on_the_class() -> None:
    for cls in SDK_CLASSES:
        assert cls.cacheable is True and cls.needs_key is True
    assert ScriptedProvider.cacheable is False and ScriptedProvider.needs_key is False
    scripted = ScriptedProvider.from_data({"root": ["x"]}, "s.yaml")
    assert scripted.cache_identity() == {"provider": "scripted", "script": "s.yaml"}

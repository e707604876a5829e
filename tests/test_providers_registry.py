"""The provider registry: every preset's kind has a factory, make_providers builds the class of
its kind with the connection the settings say, and the preset names help texts are made from."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable

import pytest

from rlm_cli.config import Settings
from rlm_cli.errors import ConfigError
from rlm_cli.providers import KINDS, make_providers, preset_names
from rlm_cli.providers.anthropic_provider import AnthropicProvider
from rlm_cli.providers.catalog import providers
from rlm_cli.providers.openai_provider import OpenAIProvider
from rlm_cli.providers.scripted import ScriptedProvider
from rlm_cli.providers.wire import WireProvider


def test_every_preset_names_a_kind_the_registry_makes() -> None:
    kinds = {info.kind for info in providers().values()}
    assert kinds <= set(KINDS)
    assert set(KINDS) == {"openai", "anthropic", "scripted"}


def test_preset_names_are_the_catalog_s_in_its_order() -> None:
    names = preset_names()
    assert names == list(providers())
    assert names[:2] == ["openai", "anthropic"]
    assert {"scripted", "ollama", "llamacpp", "openrouter"} <= set(names)


@pytest.mark.parametrize(
    ("provider", "cls"),
    [("openai", OpenAIProvider), ("anthropic", AnthropicProvider), ("ollama", OpenAIProvider)],
)
def test_each_kind_makes_its_class(
    provider: str, cls: type[WireProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k1")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k2")
    settings = Settings(provider=provider, model="m", temperature=0.5)
    root, worker = make_providers(settings)
    assert type(root) is cls and worker is root  # one shared instance when they match
    identity = root.cache_identity()
    assert identity["provider"] == provider and identity["temperature"] == 0.5
    if provider == "ollama":  # the preset's endpoint
        assert identity["base_url"] == "http://localhost:11434/v1"
    else:  # the SDK's default, resolved
        assert identity["base_url"] == cls.default_base_url


def test_a_worker_on_another_server_is_another_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    settings = Settings(
        provider="openai", model="m", base_url="http://127.0.0.1:1/v1",
        sub_base_url="http://127.0.0.1:2/v1", sub_model="w",
    )  # fmt: skip
    root, worker = make_providers(settings)
    assert root is not worker
    assert root.cache_identity()["base_url"] == "http://127.0.0.1:1/v1"
    assert worker.cache_identity()["base_url"] == "http://127.0.0.1:2/v1"
    assert root.cache_identity() != worker.cache_identity()


def test_the_scripted_kind_needs_its_script() -> None:
    with pytest.raises(ConfigError, match="needs --script FILE"):
        make_providers(Settings(provider="scripted"))


def test_scripted_comes_from_the_registry(write_script: Callable[..., str]) -> None:
    path = write_script(["FINAL('x')"])
    root, worker = make_providers(Settings(provider="scripted", script=path))
    assert isinstance(root, ScriptedProvider) and worker is root
    assert not root.cacheable and not root.needs_key


def test_a_kind_no_module_serves_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import rlm_cli.providers as registry

    info = providers()["ollama"]
    odd = dataclasses.replace(info, kind="grpc")
    monkeypatch.setattr(registry, "provider_info", lambda name: odd)
    with pytest.raises(ConfigError, match="unknown kind 'grpc'"):
        make_providers(Settings(provider="ollama", model="m"))


def test_help_imports_no_sdk_and_no_aiohttp() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rlm_cli", "--help"],
        capture_output=True,
        check=True,
    )
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in proc.stderr.decode().splitlines() if "|" in line
    }
    heavy = {"openai", "anthropic", "aiohttp"}
    assert not heavy & imported
    # The provider modules themselves are imported only when a provider is made.
    assert not {name for name in imported if name.endswith("_provider")}

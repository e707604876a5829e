"""Model providers. The provider modules are imported lazily: a kind's module (and aiohttp under
it) is imported when a provider of that kind is made. No vendor SDK is imported at run time."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from rlm_cli.config import DEFAULT_MODELS, DEFAULT_SUB_MODELS, Settings
from rlm_cli.errors import ConfigError
from rlm_cli.providers.base import Completion, Message, ModelRequest, Provider, Usage
from rlm_cli.providers.catalog import Catalog, preset_names, provider_info
from rlm_cli.providers.connection import Connection, resolve_key

__all__ = [
    "KINDS",
    "Completion",
    "Message",
    "ModelRequest",
    "Provider",
    "Usage",
    "make_providers",
    "preset_names",
]

# Makes the provider of one kind from its connection and the run's settings.
ProviderFactory = Callable[[Connection, Settings], Provider]


def _wire_kind(module: str, class_name: str) -> ProviderFactory:
    """The factory of a wire-format provider class, `class_name` in `module`, which takes a Connection:
    the module is imported on the first provider made (`rlm --help` imports none of them)."""

    def make(conn: Connection, settings: Settings) -> Provider:
        cls = cast(
            "Callable[[Connection], Provider]", getattr(importlib.import_module(module), class_name)
        )
        return cls(conn)

    return make


def _scripted(conn: Connection, settings: Settings) -> Provider:
    from rlm_cli.providers.scripted import ScriptedProvider

    if not settings.script:
        raise ConfigError(
            "setting script: the scripted provider needs --script FILE "
            "(see README: 'The scripted provider')"
        )
    return ScriptedProvider.from_file(settings.script)


# The kinds of provider, by the `kind` the catalog's presets name. A new wire format is one
# module (a WireProvider subclass) and one line here.
KINDS: dict[str, ProviderFactory] = {
    "openai": _wire_kind("rlm_cli.providers.openai_provider", "OpenAIProvider"),
    "anthropic": _wire_kind("rlm_cli.providers.anthropic_provider", "AnthropicProvider"),
    "scripted": _scripted,
}


def make_providers(settings: Settings, catalog: Catalog | None = None) -> tuple[Provider, Provider]:
    """The root and worker providers for these settings (one shared instance when they match).

    Everything that can be checked without a key is checked first, so a typo in a provider's
    name is reported as such, not as a missing key."""
    catalog = catalog or Catalog(settings.prices)
    provider_info(settings.provider)  # an unknown name: "did you mean ...?"
    if settings.sub_provider is not None:
        provider_info(settings.sub_provider)
    root_key = (settings.provider, settings.base_url, settings.api_key_env)
    same = settings.sub_provider in (None, settings.provider)
    worker_key = (
        settings.worker_provider,
        settings.worker_base_url,
        settings.sub_api_key_env or (settings.api_key_env if same else None),
    )
    if settings.model is None and settings.provider not in DEFAULT_MODELS:
        raise ConfigError(
            f"provider {settings.provider!r} has no default model; name the one it serves with --model"
        )
    if settings.sub_model is None:
        if not same and settings.sub_provider not in DEFAULT_SUB_MODELS:
            raise ConfigError(
                f"provider {settings.sub_provider!r} (--sub-provider) has no default model; "
                "name the one it serves with --sub-model"
            )
        if settings.sub_base_url and settings.sub_base_url != settings.base_url:
            # Another server than the root's: neither the root's model nor a vendor's default
            # is known to be served there, and guessing means a 404 on every sub-call.
            raise ConfigError(
                f"--sub-base-url {settings.sub_base_url}: name the model that server serves "
                "with --sub-model"
            )
    root = _make(*root_key, settings, catalog)
    if worker_key == root_key:
        return root, root
    return root, _make(*worker_key, settings, catalog)


def concurrency(preset: int | None, settings: Settings) -> int | None:
    """Requests one server is sent at once, root streams and sub-calls together: the lower of
    its preset's `concurrency` and --max-concurrency; None when the preset names none (then the
    router's per-provider limit, --max-concurrency, is the only one)."""
    return None if preset is None else min(preset, settings.max_concurrency)


def _make(
    name: str, base_url: str | None, key_env: str | None, settings: Settings, catalog: Catalog
) -> Provider:
    info = provider_info(name)
    factory = KINDS.get(info.kind)
    if factory is None:  # a preset in catalog.yaml naming a kind no module serves
        raise ConfigError(
            f"provider {name!r}: unknown kind {info.kind!r} (one of {', '.join(KINDS)})"
        )
    key_env = key_env or info.key_env
    conn = Connection(
        name=name,
        base_url=base_url or info.base_url,
        key_env=key_env,
        api_key=resolve_key(name, key_env, info.local),
        local=info.local,
        catalog=catalog,
        max_retries=settings.max_retries,
        timeout_s=settings.request_timeout,
        temperature=settings.temperature,
        max_output_tokens=settings.max_output_tokens,
        reasoning_effort=settings.reasoning_effort,
        concurrency=concurrency(info.concurrency, settings),
        kind=info.kind,
    )
    return factory(conn, settings)

"""Model providers. Vendor SDKs are imported lazily, inside the provider that needs them."""

from __future__ import annotations

from rlm_cli.config import DEFAULT_MODELS, Settings
from rlm_cli.errors import ConfigError
from rlm_cli.providers.base import Completion, Message, ModelRequest, Provider, Usage
from rlm_cli.providers.catalog import Catalog, provider_info
from rlm_cli.providers.sdk import Connection, resolve_key

__all__ = ["Completion", "Message", "ModelRequest", "Provider", "Usage", "make_providers"]


def make_providers(settings: Settings, catalog: Catalog | None = None) -> tuple[Provider, Provider]:
    """The root and worker providers for these settings (one shared instance when they match)."""
    catalog = catalog or Catalog(settings.prices)
    root_key = (settings.provider, settings.base_url, settings.api_key_env)
    worker_key = (
        settings.worker_provider,
        settings.sub_base_url
        or (settings.base_url if settings.sub_provider in (None, settings.provider) else None),
        settings.sub_api_key_env
        or (settings.api_key_env if settings.sub_provider in (None, settings.provider) else None),
    )
    if settings.model is None and settings.provider not in DEFAULT_MODELS:
        raise ConfigError(
            f"provider {settings.provider!r} has no default model; name the one it serves with --model"
        )
    root = _make(*root_key, settings, catalog)
    if worker_key == root_key:
        return root, root
    return root, _make(*worker_key, settings, catalog)


def _make(
    name: str, base_url: str | None, key_env: str | None, settings: Settings, catalog: Catalog
) -> Provider:
    info = provider_info(name)
    if info.kind == "scripted":
        from rlm_cli.providers.scripted import ScriptedProvider

        if not settings.script:
            raise ConfigError(
                "setting script: the scripted provider needs --script FILE "
                "(see README: 'The scripted provider')"
            )
        return ScriptedProvider.from_file(settings.script)
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
    )
    if info.kind == "anthropic":
        from rlm_cli.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(conn)
    from rlm_cli.providers.openai_provider import OpenAIProvider

    return OpenAIProvider(conn)

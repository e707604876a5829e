"""Model providers. Vendor SDKs are imported lazily, inside the provider that needs them."""

from __future__ import annotations

from rlm_cli.config import DEFAULT_MODELS, DEFAULT_SUB_MODELS, Settings
from rlm_cli.errors import ConfigError
from rlm_cli.providers.base import Completion, Message, ModelRequest, Provider, Usage
from rlm_cli.providers.catalog import Catalog, provider_info
from rlm_cli.providers.sdk import Connection, resolve_key

__all__ = ["Completion", "Message", "ModelRequest", "Provider", "Usage", "make_providers"]


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
        concurrency=concurrency(info.concurrency, settings),
        kind=info.kind,
    )
    if info.kind == "anthropic":
        from rlm_cli.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(conn)
    from rlm_cli.providers.openai_provider import OpenAIProvider

    return OpenAIProvider(conn)

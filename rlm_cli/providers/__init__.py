"""Model providers. Vendor SDKs are imported lazily, inside the provider that needs them."""

from __future__ import annotations

from rlm_cli.config import Settings
from rlm_cli.errors import ConfigError
from rlm_cli.providers.base import Completion, Message, ModelRequest, Provider, Usage

__all__ = ["Completion", "Message", "ModelRequest", "Provider", "Usage", "make_providers"]


def make_providers(settings: Settings) -> tuple[Provider, Provider]:
    """The root and worker providers for these settings (one shared instance when they match)."""
    root = _make(settings.provider, settings)
    if settings.worker_provider == settings.provider:
        return root, root
    return root, _make(settings.worker_provider, settings)


def _make(name: str, settings: Settings) -> Provider:
    if name == "scripted":
        from rlm_cli.providers.scripted import ScriptedProvider

        if not settings.script:
            raise ConfigError(
                "setting script: the scripted provider needs --script FILE "
                "(see README: 'The scripted provider')"
            )
        return ScriptedProvider.from_file(settings.script)
    raise ConfigError(
        f"provider {name!r} is not available in this version yet; use --provider scripted --script FILE"
    )

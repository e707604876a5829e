"""Every file in configs/ is a config a user can start from: it loads, every setting in it is
valid, and its providers can be made (keys given as a user would export them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_cli.config import load_settings
from rlm_cli.providers import make_providers
from rlm_cli.providers.catalog import providers

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_there_is_a_config_for_each_kind_of_server() -> None:
    names = {path.stem for path in CONFIGS}
    assert {"openai", "anthropic", "ollama", "vllm", "llamacpp", "openrouter"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_a_config_loads_and_its_providers_can_be_made(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for info in providers().values():
        if info.key_env:
            monkeypatch.setenv(info.key_env, "sk-test-not-a-real-key")
    settings = load_settings({}, path)
    root, worker = make_providers(settings)
    assert root.name == settings.provider
    if path.stem in {"openai", "anthropic", "ollama", "vllm", "llamacpp", "openrouter"}:
        # Named for the server they talk to, and naming both models (no silent default).
        assert settings.provider == path.stem
        assert "model" in settings.origin and "sub_model" in settings.origin
    assert worker is not None

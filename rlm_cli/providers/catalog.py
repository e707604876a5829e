"""Model facts, prices and provider presets, from the YAML shipped in the package (and the user's)."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rlm_cli.errors import ConfigError

# Re-exported (engine/router.py imports it from here); the one definition is in inputs.
from rlm_cli.inputs.model import CHARS_PER_TOKEN
from rlm_cli.providers.base import Usage

# Used for models the catalog does not know: small enough for most servers.
DEFAULT_WINDOW = 32_768
DEFAULT_MAX_OUTPUT = 4_096


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def cost(self, usage: Usage) -> float:
        # usage.input_tokens counts every input token, cached and cache-written ones included.
        cached = usage.cached_input_tokens
        written = usage.cache_write_tokens
        plain = max(usage.input_tokens - cached - written, 0)
        total = (
            plain * self.input
            + cached * (self.input if self.cached_input is None else self.cached_input)
            + written * (self.input if self.cache_write is None else self.cache_write)
            + usage.output_tokens * self.output
        )
        return total / 1_000_000


@dataclass(frozen=True)
class ModelFacts:
    name: str
    window: int
    max_output: int
    reasoning: bool
    price: Price | None
    known: bool

    @property
    def prompt_chars(self) -> int:
        """How many characters one prompt may hold: the window less room for the reply."""
        reply = min(self.max_output, self.window // 4)
        return (self.window - reply) * CHARS_PER_TOKEN


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    kind: str  # a key of rlm_cli.providers.KINDS: "openai", "anthropic" or "scripted"
    base_url: str | None
    key_env: str | None
    local: bool
    # Requests the server takes at once (local servers run one model on one machine), or None.
    concurrency: int | None = None


@functools.cache
def _packaged() -> dict[str, Any]:
    text = resources.files("rlm_cli.providers").joinpath("data/catalog.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def providers() -> dict[str, ProviderInfo]:
    """The provider presets of catalog.yaml, by name, in its order."""
    return {
        name: ProviderInfo(
            name=name,
            kind=spec["kind"],
            base_url=spec.get("base_url"),
            key_env=spec.get("key_env"),
            local=bool(spec.get("local")),
            concurrency=spec.get("concurrency"),
        )
        for name, spec in _packaged()["providers"].items()
    }


def preset_names() -> list[str]:
    """The names --provider and --sub-provider take, in catalog order (for help texts)."""
    return list(providers())


def provider_info(name: str) -> ProviderInfo:
    table = providers()
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else f"choose one of: {', '.join(table)} "
        raise ConfigError(f"unknown provider {name!r}; {hint}(see `rlm providers`)")
    return table[name]


class Catalog:
    """The packaged model table, with the user's price file (if any) laid over it."""

    def __init__(self, prices_file: str | None = None) -> None:
        self._models: dict[str, dict[str, Any]] = {
            name: dict(spec) for name, spec in _packaged()["models"].items()
        }
        if prices_file:
            for name, spec in _read_prices(Path(prices_file)).items():
                self._models.setdefault(name, {}).update(spec)

    def names(self) -> list[str]:
        return list(self._models)

    def facts(self, model: str) -> ModelFacts:
        spec = self._models.get(model) or self._models.get(_strip_vendor(model))
        if spec is None:
            return ModelFacts(model, DEFAULT_WINDOW, DEFAULT_MAX_OUTPUT, False, None, known=False)
        price = None
        if "input" in spec and "output" in spec:
            price = Price(
                input=float(spec["input"]),
                output=float(spec["output"]),
                cached_input=_optional_float(spec.get("cached_input")),
                cache_write=_optional_float(spec.get("cache_write")),
            )
        return ModelFacts(
            name=model,
            window=int(spec.get("window", DEFAULT_WINDOW)),
            max_output=int(spec.get("max_output", DEFAULT_MAX_OUTPUT)),
            reasoning=bool(spec.get("reasoning", False)),
            price=price,
            known=True,
        )


def _strip_vendor(model: str) -> str:
    """`openai/gpt-5` (OpenRouter style) has the facts of `gpt-5`."""
    return model.rsplit("/", 1)[-1]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _read_prices(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the prices file ({exc.strerror}); check the prices setting"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise ConfigError(f"{path}: a prices file is `models:` mapping model names to prices")
    known = {"window", "max_output", "reasoning", "input", "cached_input", "cache_write", "output"}
    for name, spec in models.items():
        unknown = set(spec) - known
        if unknown:
            raise ConfigError(f"{path}: model {name}: unknown key {sorted(unknown)[0]!r}")
    return models

"""Model facts, prices and provider presets, from the YAML shipped in the package (and the user's)."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from rlm_cli.errors import ConfigError

# Re-exported (engine/router.py imports it from here); the one definition is in inputs.
from rlm_cli.inputs.model import CHARS_PER_TOKEN
from rlm_cli.providers.base import Usage

# Used for models the catalog does not know: small enough for most servers.
DEFAULT_WINDOW = 32_768
DEFAULT_MAX_OUTPUT = 4_096

# Where a model's window came from: the packaged table (or the prices file), the model's server
# (engine/capacity.py asks it), the sub_window setting, or DEFAULT_WINDOW.
WindowSource = Literal["catalog", "server", "sub_window", "default"]

# The vendors' own APIs, where the SDKs send requests given no base URL. With the hosts of the
# hosted presets below they are never asked what they serve: their windows are in the table.
VENDOR_HOSTS = frozenset({"api.openai.com", "api.anthropic.com"})


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
    window: int  # tokens in and out together
    max_output: int
    reasoning: bool
    price: Price | None
    known: bool  # in the table (or the prices file)
    # The most input tokens one request may carry, where the API caps input below the window
    # (the GPT-5 family: a 400K window, 272K of it input); None: only the window bounds it.
    input_limit: int | None = None
    source: WindowSource = "catalog"
    # Who said, when it was not the table: "llama.cpp /props n_ctx", "--sub-window" (traces
    # and `rlm doctor` show it).
    source_detail: str = ""

    @property
    def prompt_chars(self) -> int:
        """How many characters one prompt may hold: the window less room for the reply, and
        never more than the input limit. The root is told this figure and the sub-call guard
        refuses past it, so both must read it here."""
        reply = min(self.max_output, self.window // 4)
        tokens = self.window - reply
        if self.input_limit is not None:
            tokens = min(tokens, self.input_limit)
        return tokens * CHARS_PER_TOKEN


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
    # libyaml's safe loader where PyYAML has it: the pure-Python one took 40 ms of every start,
    # `rlm --help` included (the flags' help names the presets).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data: dict[str, Any] = yaml.load(text, Loader=loader)
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


def hosted_hosts() -> frozenset[str]:
    """The hosts of hosted APIs (the vendors' own, and every preset not marked `local`): a base
    URL elsewhere is a server of the user's, which may be asked what window it serves."""
    hosts = {
        urllib.parse.urlsplit(info.base_url).hostname
        for info in providers().values()
        if info.base_url and not info.local
    }
    return VENDOR_HOSTS | {host for host in hosts if host}


def provider_info(name: str) -> ProviderInfo:
    table = providers()
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else f"choose one of: {', '.join(table)} "
        raise ConfigError(f"unknown provider {name!r}; {hint}(see `rlm providers`)")
    return table[name]


@dataclass(frozen=True)
class _Learned:
    window: int
    source: WindowSource
    detail: str


class Catalog:
    """The packaged model table, with the user's price file (if any) laid over it, and the
    windows learned for this run (`learn`): one Catalog is shared by a run tree, so the figure
    the root is told and the one the sub-call guard enforces are the same."""

    def __init__(self, prices_file: str | None = None) -> None:
        self._models: dict[str, dict[str, Any]] = {
            name: dict(spec) for name, spec in _packaged()["models"].items()
        }
        if prices_file:
            for name, spec in _read_prices(Path(prices_file)).items():
                self._models.setdefault(name, {}).update(spec)
        self._learned: dict[str, _Learned] = {}

    def names(self) -> list[str]:
        return list(self._models)

    def learn(self, model: str, window: int, source: WindowSource, detail: str = "") -> None:
        """From now on `facts(model)` has this window (tokens), said by `source`."""
        if window < 1:
            raise ValueError(f"a window of {window} tokens")
        self._learned[model] = _Learned(window, source, detail)

    def facts(self, model: str) -> ModelFacts:
        facts = self._table_facts(model)
        learned = self._learned.get(model)
        if learned is None:
            return facts
        return dataclasses.replace(
            facts, window=learned.window, source=learned.source, source_detail=learned.detail
        )

    def _table_facts(self, model: str) -> ModelFacts:
        spec = self._models.get(model) or self._models.get(_strip_vendor(model))
        if spec is None:
            return ModelFacts(
                model,
                DEFAULT_WINDOW,
                DEFAULT_MAX_OUTPUT,
                False,
                None,
                known=False,
                source="default",
            )
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
            input_limit=_optional_int(spec.get("input_limit")),
        )


def _strip_vendor(model: str) -> str:
    """`openai/gpt-5` (OpenRouter style) has the facts of `gpt-5`."""
    return model.rsplit("/", 1)[-1]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


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
    known = {
        "window",
        "input_limit",
        "max_output",
        "reasoning",
        "input",
        "cached_input",
        "cache_write",
        "output",
    }
    for name, spec in models.items():
        unknown = set(spec) - known
        if unknown:
            raise ConfigError(f"{path}: model {name}: unknown key {sorted(unknown)[0]!r}")
    return models

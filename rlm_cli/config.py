"""Settings: validated values, where each came from, and the config file that may supply them.

Load order, later wins: built-in defaults < config file < command-line flags (or library arguments).
The config file is `--config FILE`, else `$RLM_CONFIG`, else `$XDG_CONFIG_HOME/rlm/config.yaml`
(`~/.config/rlm/config.yaml`) when it exists. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlm_cli.errors import ConfigError

PROVIDERS = ("openai", "anthropic", "scripted")
PATH_SETTINGS = frozenset({"script"})


@dataclass(frozen=True)
class Settings:
    provider: str = "openai"
    model: str | None = None
    sub_provider: str | None = None
    sub_model: str | None = None
    script: str | None = None
    max_iterations: int = 30
    cell_timeout: float = 120.0
    max_concurrency: int = 16
    output_limit: int = 20_000
    trace: str | None = None
    trace_full: bool = False
    # Where each non-default value came from ("config file PATH" or "flag"); not a setting itself.
    origin: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def root_model(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.provider, self.provider)

    @property
    def worker_provider(self) -> str:
        return self.sub_provider or self.provider

    @property
    def worker_model(self) -> str:
        if self.sub_model:
            return self.sub_model
        if self.sub_provider and self.sub_provider != self.provider:
            return DEFAULT_SUB_MODELS.get(self.sub_provider, self.sub_provider)
        return DEFAULT_SUB_MODELS.get(self.provider, self.root_model)

    def public(self) -> dict[str, Any]:
        """The settings as recorded in traces and `--json`: no secrets live in Settings."""
        data = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "origin"
        }
        data["root_model"] = self.root_model
        data["worker_model"] = self.worker_model
        return data

    def validate(self) -> Settings:
        _check(self.provider in PROVIDERS, "provider", f"must be one of {', '.join(PROVIDERS)}")
        _check(
            self.sub_provider is None or self.sub_provider in PROVIDERS,
            "sub_provider",
            f"must be one of {', '.join(PROVIDERS)}",
        )
        _check(1 <= self.max_iterations <= 1000, "max_iterations", "must be between 1 and 1000")
        _check(
            0 < self.cell_timeout <= 86_400, "cell_timeout", "must be between 0 and 86400 seconds"
        )
        _check(1 <= self.max_concurrency <= 1024, "max_concurrency", "must be between 1 and 1024")
        _check(1_000 <= self.output_limit <= 10_000_000, "output_limit", "must be 1000 or more")
        return self


DEFAULT_MODELS = {"openai": "gpt-5", "anthropic": "claude-sonnet-4-5", "scripted": "scripted-root"}
DEFAULT_SUB_MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-haiku-4-5",
    "scripted": "scripted-worker",
}
FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Settings)) - {"origin"}


def _check(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"setting {name}: {what}")


def default_config_path() -> Path | None:
    explicit = os.environ.get("RLM_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    path = Path(base) / "rlm" / "config.yaml"
    return path if path.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file is a mapping of setting: value")
    values = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in FIELD_NAMES:
            raise ConfigError(
                f"{path}: unknown setting {key!r}; see configs/example.yaml for the known ones"
            )
        if name in PATH_SETTINGS and isinstance(value, str) and not os.path.isabs(value):
            value = str(path.parent / value)  # a path in a config file is relative to the file
        values[name] = value
    return values


def load_settings(overrides: dict[str, Any], config_path: Path | None = None) -> Settings:
    """Defaults, then the config file, then `overrides` (flags); None in overrides means unset."""
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    path = config_path or default_config_path()
    if path is not None:
        for name, value in read_config_file(path).items():
            values[name] = value
            origin[name] = f"config file {path}"
    for name, value in overrides.items():
        if name not in FIELD_NAMES:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = value
            origin[name] = "flag"
    try:
        settings = Settings(**values, origin=origin)
    except TypeError as exc:
        raise ConfigError(f"invalid settings: {exc}") from None
    _check_types(settings)
    return settings.validate()


def _check_types(settings: Settings) -> None:
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "origin" or value is None:
            continue
        where = settings.origin.get(f.name, "default")
        expected = {int: (int,), float: (int, float), bool: (bool,), str: (str,)}
        kind = type(Settings.__dataclass_fields__[f.name].default)
        if kind is type(None):
            kind = str
        if kind in expected and (
            not isinstance(value, expected[kind]) or (kind is not bool and isinstance(value, bool))
        ):
            raise ConfigError(
                f"setting {f.name} ({where}): expected {kind.__name__}, got {value!r}"
            )

"""Settings: validated values, where each came from, and the config file that may supply them.

Load order, later wins: built-in defaults < config file < command-line flags (or library arguments).
The config file is `--config FILE`, else `$RLM_CONFIG`, else `$XDG_CONFIG_HOME/rlm/config.yaml`
(`~/.config/rlm/config.yaml`) when it exists. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlm_cli.errors import ConfigError

PATH_SETTINGS = frozenset({"script", "prices"})
# Settings that name an environment variable holding a key (never the key itself).
KEY_ENV_SETTINGS = {"api_key_env": "--api-key-env", "sub_api_key_env": "--sub-api-key-env"}
# Shown, traced and put in --json instead of a value that looks like an API key.
HIDDEN = "<hidden: looks like an API key>"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Prefixes of vendors' keys (OpenAI sk-/sk-proj-, Anthropic sk-ant-, Groq gsk_, Hugging Face
# hf_, GitHub ghp_/github_pat_, xAI xai-, Google AIza, AWS AKIA) followed by key characters.
KEY_PATTERN = re.compile(
    r"\b(?:sk-|sk_|gsk_|hf_|ghp_|gho_|github_pat_|xai-|AIza|AKIA)[A-Za-z0-9_\-]{8,}"
)


@dataclass(frozen=True)
class Settings:
    provider: str = "openai"
    model: str | None = None
    sub_provider: str | None = None
    sub_model: str | None = None
    script: str | None = None
    base_url: str | None = None
    sub_base_url: str | None = None
    api_key_env: str | None = None
    sub_api_key_env: str | None = None
    temperature: float | None = None
    max_output_tokens: int | None = None
    reasoning_effort: str | None = None
    max_retries: int = 6
    request_timeout: float = 600.0
    prices: str | None = None
    max_iterations: int = 30
    cell_timeout: float = 120.0
    max_concurrency: int = 32
    max_depth: int = 1
    max_cost: float | None = None
    max_tokens: int | None = None
    max_subcalls: int | None = None
    timeout: float | None = None
    cache: bool = True
    cache_root: bool = False
    output_limit: int = 20_000
    trace: str | None = None
    trace_full: bool = False
    # Inputs: a file inside a directory or archive with more bytes of text than this is skipped.
    max_file_size: int = 100 * 1024 * 1024
    # Inputs: more text than this share of memory is refused (loading peaks near twice a file).
    max_memory_share: float = 0.4
    # Where cells run: "process" (an isolated worker, see SECURITY.md) or "none" (no isolation).
    sandbox: str = "process"
    # Run even when some layers of the process sandbox are unavailable on this system.
    allow_weaker_sandbox: bool = False
    # The worker's address-space limit in MiB; None sizes it from the inputs and the machine.
    worker_memory_mb: int | None = None
    # Mask obvious secrets (API keys, private keys, tokens) in sub-call prompts before sending.
    redact_secrets: bool = False
    # Exit 7 ("answered, but sub-calls failed") instead of 0 when any sub-call failed.
    strict: bool = False
    # On a terminal, ask before a run whose high cost estimate is above this many US dollars.
    confirm_above_usd: float = 5.0
    # Where each non-default value came from ("config file PATH" or "flag"); not a setting itself.
    origin: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def root_model(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.provider, self.provider)

    @property
    def worker_provider(self) -> str:
        return self.sub_provider or self.provider

    @property
    def worker_base_url(self) -> str | None:
        """The worker's endpoint when it is not its provider's default: --sub-base-url, or the
        root's --base-url when the worker uses the root's provider."""
        same_provider = self.sub_provider in (None, self.provider)
        return self.sub_base_url or (self.base_url if same_provider else None)

    @property
    def worker_model(self) -> str:
        if self.sub_model:
            return self.sub_model
        if self.sub_provider and self.sub_provider != self.provider:
            return DEFAULT_SUB_MODELS.get(self.sub_provider, self.sub_provider)
        if self.worker_base_url is not None:
            # A server of the user's (--base-url) serves the models it serves: OpenAI's default
            # worker model would be a 404 on every sub-call, the root's model is known to work.
            # (A worker on another server, --sub-base-url, must be named: see make_providers.)
            return self.root_model
        return DEFAULT_SUB_MODELS.get(self.provider, self.root_model)

    def cache_key_settings(self, *, worker: bool = True) -> dict[str, Any]:
        """The settings that change a model's reply, so part of every cache key: those of the
        worker provider (sub-calls, child runs' root calls), or of the root provider."""
        return {
            "base_url": (self.sub_base_url or self.base_url) if worker else self.base_url,
            "temperature": self.temperature,
            "max_output_tokens": self.max_output_tokens,
            "reasoning_effort": self.reasoning_effort,
        }

    def public(self) -> dict[str, Any]:
        """The settings as recorded in traces and `--json`. No secrets belong in Settings, but
        a key pasted where a name or URL goes is hidden rather than recorded."""
        data = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "origin"
        }
        data["root_model"] = self.root_model
        data["worker_model"] = self.worker_model
        return public_values(data)

    def validate(self) -> Settings:
        for name, flag in KEY_ENV_SETTINGS.items():
            value = getattr(self, name)
            if isinstance(value, str) and not is_env_name(value):
                # Never echo it: the usual mistake is pasting the key itself here.
                raise ConfigError(
                    f"setting {name}: {flag} takes the NAME of an environment variable, e.g. "
                    "OPENAI_API_KEY; the value given looks like a key itself and is not shown"
                )
        _check(
            self.reasoning_effort in (None, "low", "medium", "high"),
            "reasoning_effort",
            "must be low, medium or high",
        )
        _check(
            self.temperature is None or 0 <= self.temperature <= 2, "temperature", "must be 0 to 2"
        )
        _check(
            self.max_output_tokens is None or self.max_output_tokens >= 1,
            "max_output_tokens",
            "must be 1 or more",
        )
        _check(1 <= self.max_retries <= 20, "max_retries", "must be between 1 and 20 attempts")
        _check(0 < self.request_timeout <= 3600, "request_timeout", "must be 0 to 3600 seconds")
        _check(1 <= self.max_iterations <= 1000, "max_iterations", "must be between 1 and 1000")
        _check(
            0 < self.cell_timeout <= 86_400, "cell_timeout", "must be between 0 and 86400 seconds"
        )
        _check(1 <= self.max_concurrency <= 1024, "max_concurrency", "must be between 1 and 1024")
        _check(1 <= self.max_depth <= 5, "max_depth", "must be between 1 and 5")
        for name in ("max_cost", "max_tokens", "max_subcalls", "timeout"):
            value = getattr(self, name)
            _check(value is None or value > 0, name, "must be more than 0")
        _check(1_000 <= self.output_limit <= 10_000_000, "output_limit", "must be 1000 or more")
        _check(self.max_file_size >= 1, "max_file_size", "must be 1 byte or more")
        _check(
            0 < self.max_memory_share <= 0.9, "max_memory_share", "must be more than 0, at most 0.9"
        )
        _check(self.confirm_above_usd >= 0, "confirm_above_usd", "must be 0 or more")
        _check(self.sandbox in SANDBOXES, "sandbox", "must be process or none")
        _check(
            self.worker_memory_mb is None or self.worker_memory_mb >= 256,
            "worker_memory_mb",
            "must be 256 MiB or more",
        )
        return self


SANDBOXES = ("process", "none")
DEFAULT_MODELS = {"openai": "gpt-5", "anthropic": "claude-sonnet-4-5", "scripted": "scripted-root"}
DEFAULT_SUB_MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-haiku-4-5",
    "scripted": "scripted-worker",
}
FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Settings)) - {"origin"}


def is_env_name(value: str) -> bool:
    """Whether `value` reads as an environment variable's name, not as a key pasted in its
    place: a valid name (letters, digits, _), with no vendor key prefix, and not a long random
    token (20+ characters of letters and digits in mixed case, or with no _ at all)."""
    if not ENV_NAME.fullmatch(value) or KEY_PATTERN.match(value):
        return False
    if len(value) >= 20 and any(c.isdigit() for c in value):
        mixed_case = value != value.upper() and value != value.lower()
        return not mixed_case and "_" in value
    return True


def looks_like_key(value: object) -> bool:
    """Whether a setting's value holds something shaped like a vendor's API key."""
    return isinstance(value, str) and KEY_PATTERN.search(value) is not None


def mask_keys(text: str) -> str:
    """`text` with everything shaped like a vendor's API key replaced by ***."""
    return KEY_PATTERN.sub("***", text)


def public_values(values: dict[str, Any]) -> dict[str, Any]:
    """Setting values safe to print, trace or put in --json: a value that looks like a key
    (anywhere; in a key-variable setting, anything that is not a variable name) is hidden."""
    safe = {}
    for name, value in values.items():
        hidden = looks_like_key(value) or (
            name in KEY_ENV_SETTINGS and isinstance(value, str) and not is_env_name(value)
        )
        safe[name] = HIDDEN if hidden else value
    return safe


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
    """Config files and library callers can pass anything; say which setting is wrong, and how."""
    accepted: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "str": (str,),
    }
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name == "origin" or value is None:
            continue
        kind = str(f.type).split(" |")[0]
        ok = isinstance(value, accepted[kind]) and (kind == "bool" or not isinstance(value, bool))
        if not ok:
            where = settings.origin.get(f.name, "default")
            shown = public_values({f.name: value})[f.name]
            shown = shown if shown == HIDDEN else repr(value)
            raise ConfigError(f"setting {f.name} ({where}): expected {kind}, got {shown}")

"""What the command line needs from the declarations: each setting's flag kind, its help with
its default, and the settings overrides from the flags' values (so no flag is spelled twice)."""

from __future__ import annotations

import typing
from typing import Any, Literal

from rlm_cli.config.settings import DEFAULTS, FLAG_PARAMS, SPECS, hints

FlagKind = Literal["value", "on", "off", "repeat"]


def flag_kind(name: str) -> FlagKind:
    """How setting `name`'s flag is given: with a value; a switch that turns it on (`--strict`)
    or off (`--no-cache`); or repeated, once per item (`--include A --include B`)."""
    hint = hints()[name]
    if hint is bool:
        return "off" if DEFAULTS[name] else "on"
    return "repeat" if typing.get_origin(hint) is tuple else "value"


def default_text(name: str) -> str:
    """Setting `name`'s default in words: `30`, `on`, `no limit`."""
    spec, default = SPECS[name], DEFAULTS[name]
    if spec.default_text is not None:
        return spec.default_text
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


def setting_help(name: str) -> str:
    """The help of setting `name`'s flag: its one sentence and its default."""
    spec = SPECS[name]
    default = f"Default: {default_text(name)}"
    if flag_kind(name) == "off":
        default += f"; {spec.flag} turns it off"
    return f"{spec.help} {default}."


def overrides_from_flags(values: dict[str, Any]) -> dict[str, Any]:
    """Settings overrides from the values Typer gives the settings' flags, keyed by parameter
    name (`FLAG_PARAMS`: `max_cost`, `no_cache`, `worker_memory`). A flag not given (None; False
    for a switch; an empty list for a repeatable flag) overrides nothing; `--no-cache` sets
    cache to False; a repeated flag's list becomes a tuple. Unknown names are a bug: ValueError.
    """
    overrides: dict[str, Any] = {}
    for param, value in values.items():
        name = FLAG_PARAMS.get(param)
        if name is None:
            raise ValueError(f"{param!r} is not the parameter of a setting's flag (FLAG_PARAMS)")
        kind = flag_kind(name)
        if value is None or (kind in ("on", "off", "repeat") and not value):
            continue
        if kind in ("on", "off"):
            value = kind == "on"
        elif kind == "repeat":
            value = tuple(value)
        overrides[name] = value
    return overrides

"""How one setting is declared (`Spec`, `setting`), and how a value is checked against it: its
type, its bounds or choices, and for key-variable settings that it names a variable, not a key.
Every message names the value's source (flag or config file), the setting and what it accepts."""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from rlm_cli.errors import ConfigError

HIDDEN = "<hidden: looks like an API key>"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Prefixes of vendors' keys (OpenAI sk-/sk-proj-, Anthropic sk-ant-, Groq gsk_, Hugging Face
# hf_, GitHub ghp_/github_pat_, xAI xai-, Google AIza, AWS AKIA) followed by key characters.
KEY_PATTERN = re.compile(
    r"\b(?:sk-|sk_|gsk_|hf_|ghp_|gho_|github_pat_|xai-|AIza|AKIA)[A-Za-z0-9_\-]{8,}"
)


@dataclass(frozen=True)
class Spec:
    """What a setting's type and default do not say: the rest of its one declaration."""

    help: str  # one sentence: what it does, and why one would change it
    flag: str | None  # its command-line flag; None: config file or library argument only
    group: str  # the heading it sits under in example.yaml
    ge: float | None = None  # bounds, inclusive (ge, le) or exclusive (gt)
    gt: float | None = None
    le: float | None = None
    unit: str = ""  # said after a bound: "seconds", "MiB"
    choices: tuple[str, ...] = ()
    default_text: str | None = None  # the default in words, when its value does not say it
    example: Any = None  # a value for example.yaml when the default is None (or empty)
    path: bool = False  # a path: relative in a config file means relative to that file
    key_env: bool = False  # names an environment variable holding a key, never the key


def setting(
    default: Any,
    help: str,
    group: str,
    *,
    flag: str | None = "",
    file_only: bool = False,
    **spec: Any,
) -> Any:
    """A `Settings` field and its declaration. The flag is `--name-with-dashes` unless named
    (`flag="--no-cache"`), or none with `file_only=True`."""
    if file_only:
        flag = None
    return field(default=default, metadata={"spec": Spec(help, flag, group, **spec)})


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


_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def checked_type(name: str, spec: Spec, hint: Any, value: Any, origin: str | None) -> Any:
    """`value` if it has setting `name`'s type (a list of strings as a tuple), else ConfigError.
    Config files and library callers can pass anything; YAML's 1 is also a float, never a bool."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType):  # `X | None`: the only unions among the settings
        if value is None:
            return None
        hint = next(arg for arg in args if arg is not type(None))
    if typing.get_origin(hint) is tuple:  # tuple[str, ...]
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise _error(name, spec, value, origin, "must be a list of strings")
    accepted = (int, float) if hint is float else (hint,)
    if isinstance(value, accepted) and (hint is bool or not isinstance(value, bool)):
        return value
    raise _error(name, spec, value, origin, f"must be {_TYPE_WORDS[hint]}")


def check_bounds(name: str, spec: Spec, value: Any, origin: str | None) -> None:
    """ConfigError unless `value` is within setting `name`'s bounds and choices."""
    if value is None:
        return
    if spec.key_env and not is_env_name(value):
        label = spec.flag if origin == "flag" and spec.flag else f"{name} ({origin or 'argument'})"
        # Never echo it: the usual mistake is pasting the key itself here.
        raise ConfigError(
            f"setting {name}: {label} takes the NAME of an environment variable, e.g. "
            "OPENAI_API_KEY; the value given looks like a key itself and is not shown"
        )
    if spec.choices and value not in spec.choices:
        *most, last = spec.choices
        raise _error(name, spec, value, origin, f"must be {', '.join(most)} or {last}")
    below = (spec.ge is not None and value < spec.ge) or (spec.gt is not None and value <= spec.gt)
    if below or (spec.le is not None and value > spec.le):
        raise _error(name, spec, value, origin, f"must be {_bounds(spec)}")


def _bounds(spec: Spec) -> str:
    """The bounds in words: `between 1 and 5`, `more than 0 and at most 0.9 seconds`."""
    unit = f" {spec.unit}" if spec.unit else ""
    if spec.le is None:
        return (
            f"at least {_num(spec.ge)}{unit}"
            if spec.gt is None
            else f"more than {_num(spec.gt)}{unit}"
        )
    if spec.gt is None:
        return f"between {_num(spec.ge)} and {_num(spec.le)}{unit}"
    return f"more than {_num(spec.gt)} and at most {_num(spec.le)}{unit}"


def _num(bound: float | None) -> str:
    return str(int(bound)) if bound is not None and float(bound).is_integer() else str(bound)


def _error(name: str, spec: Spec, value: Any, origin: str | None, what: str) -> ConfigError:
    """`--max-depth 9: setting max_depth: must be between 1 and 5`: the value and where it was
    given (flag, config file, argument) first, then the setting and what it accepts."""
    hidden = looks_like_key(value) or (
        spec.key_env and isinstance(value, str) and not is_env_name(value)
    )
    shown = HIDDEN if hidden else repr(value)
    if origin == "flag" and spec.flag:
        where = f"{spec.flag} {shown}"
    elif origin and origin.startswith("config file"):
        where = f"{origin} ({name}: {shown})"
    else:
        where = f"{name}={shown}" + (f" ({origin})" if origin and origin != "flag" else "")
    return ConfigError(f"{where}: setting {name}: {what}")

"""Escaping and figures for the HTML export: every piece of trace text goes through `escape`."""

from __future__ import annotations

import html
from typing import Any

from rlm_cli.format import first_line, format_seconds, format_usd


def encodable(text: str, errors: str) -> str:
    """`text` as it can be written in UTF-8: a lone surrogate (from a name that was not valid
    UTF-8) handled by `errors` ("replace", "backslashreplace")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors).decode("utf-8")
    return text


def escape(value: Any) -> str:
    """Escaped text for an HTML text node or a quoted attribute."""
    return html.escape(encodable("" if value is None else str(value), "replace"), quote=True)


def tokens(count: Any) -> str:
    """An exact count (`12,345`): the tables are where the exact figures are read."""
    return f"{int(count or 0):,}"


def cost(usd: Any) -> str:
    if usd is None:
        return "unknown"
    if 0 < usd < 0.0001:  # a cheap call is not free: never shown as $0.0000
        return "<$0.0001"
    return format_usd(usd)


def secs(seconds: Any) -> str:
    return "—" if seconds is None else format_seconds(seconds)


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def preview(text: Any, width: int = 100) -> str:
    """The first non-blank line, cut to `width` characters (escaped where it is written)."""
    return first_line(str(text or ""), width)


def prompt_text(prompt: Any) -> str:
    """A SUBCALL's prompt as text: the head of one the trace stored shortened."""
    if isinstance(prompt, dict):
        return str(prompt.get("head", ""))
    return str(prompt or "")

"""Small text formatting shared by the views."""

from __future__ import annotations

from typing import Any

from rlm_cli.format import first_line as _first_line
from rlm_cli.format import format_tokens
from rlm_cli.ui.safe import terminal_safe

__all__ = ["first_line", "format_tokens", "format_usage", "sandbox_line"]


def first_line(text: str, width: int = 80) -> str:
    """The first non-blank line, cut to `width`. Made terminal-safe before it is cut, so a cut
    never leaves half an escape sequence, sequences do not use up the width, and a lone CR or
    form feed is shown (`^M`) rather than taken as a line break."""
    return _first_line(terminal_safe(text), width)


def format_usage(usage: dict[str, Any]) -> str:
    """`1,234 in / 56 out tokens`; figures counted offline because the server reported none are
    shown as such (`~1,234 in / 56 out tokens (estimated)`), never as the server's own."""
    text = (
        f"{format_tokens(int(usage.get('input_tokens', 0)))} in / "
        f"{format_tokens(int(usage.get('output_tokens', 0)))} out tokens"
    )
    return f"~{text} (estimated)" if usage.get("estimated") else text


def sandbox_line(sandbox: dict[str, Any]) -> str:
    """One line on the isolation a run had: loud when it had none, or less than all of it."""
    layers = sandbox.get("layers") or {}
    if sandbox.get("mode") == "direct":
        return "no REPL: the input is under --direct-below, answered by one plain root call"
    if sandbox.get("mode") == "none":
        return "sandbox NONE: cells run with your user's full access; nothing is isolated"
    missing = [name for name, layer in layers.items() if not layer.get("active")]
    if missing:
        return f"sandbox WEAKER than it should be: no {', '.join(missing)} (see `rlm doctor`)"
    return f"sandbox process: {', '.join(layers)}" if layers else "sandbox: not reported"

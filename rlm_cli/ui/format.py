"""Small text formatting shared by the views."""

from __future__ import annotations

from typing import Any


def first_line(text: str, width: int = 80) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


def format_tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 10_000:
        return f"{count / 1_000:.0f}K"
    return f"{count:,}"


def format_usage(usage: dict[str, Any]) -> str:
    return (
        f"{format_tokens(int(usage.get('input_tokens', 0)))} in / "
        f"{format_tokens(int(usage.get('output_tokens', 0)))} out tokens"
    )

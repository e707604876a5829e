"""Figures for people, shared by every layer (the inputs report and the views alike)."""

from __future__ import annotations


def format_tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 10_000:
        return f"{count / 1_000:.0f}K"
    return f"{count:,}"

"""Figures and text for people, shared by every layer (the inputs report, the views, the CLI).

A leaf: it imports nothing from rlm_cli, so any layer may use it. Only presentation lives here;
what the figures mean (a memory budget, a price) belongs to the module that computes them.
"""

from __future__ import annotations


def format_bytes(size: float) -> str:
    """`512 bytes`, `1.5 KB`, `3.4 MB`, `12.0 GB`: decimal units (1 KB = 1,000 bytes), as disks
    and `ls --si` count, so a label never means two sizes."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def format_tokens(count: int) -> str:
    """`9,999`, `12K`, `3.4M`: exact while the digits still read at a glance."""
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 10_000:
        return f"{count / 1_000:.0f}K"
    return f"{count:,}"


def format_usd(value: float) -> str:
    """Dollars: cents (`$1,234.50`), or four decimals under ten cents (`$0.0042`), where cents
    would round a typical model call to `$0.00`."""
    return f"${value:,.2f}" if value >= 0.1 or value == 0 else f"${value:.4f}"


def format_seconds(seconds: float) -> str:
    """`0.85 s`, `9.99 s`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.

    Two decimals under ten seconds (a cell or a sub-call, where 0.2 s vs 0.8 s matters), one up to
    a minute, then whole units. Each bound is tested after rounding, so 9.999 s is `10.0 s`, not
    `10.00 s`, and 59.97 s is `1 min 00 s`, not `60.0 s`.
    """
    if round(seconds, 2) < 10:
        return f"{seconds:.2f} s"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def first_line(text: str, limit: int = 80) -> str:
    """The first non-blank line of `text`, stripped, and cut to `limit` characters with `…` as
    the last one when it is longer; "" when every line is blank.

    Text bound for a terminal should be made safe before it is cut (`ui.safe.terminal_safe`), so a
    cut never splits an escape sequence."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""

"""Figures and text for people (rlm_cli/format.py): the exact strings every view prints."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rlm_cli import format as fmt
from rlm_cli.cli.cache import _lines as cache_lines
from rlm_cli.engine.cache import CacheStats


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (999, "999 bytes"),
        (1000, "1.0 KB"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (999_949, "999.9 KB"),
        (3_400_000, "3.4 MB"),
        (12_000_000_000, "12.0 GB"),
        (5_000_000_000_000, "5,000.0 GB"),
    ],
)
def test_format_bytes_counts_in_decimal_units(size: int, text: str) -> None:
    assert fmt.format_bytes(size) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0"), (9_999, "9,999"), (10_000, "10K"), (849_600, "850K"), (3_400_000, "3.4M")],
)
def test_format_tokens(count: int, text: str) -> None:
    assert fmt.format_tokens(count) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "$0.00"),
        (0.0042, "$0.0042"),
        (0.0999, "$0.0999"),
        (0.1, "$0.10"),
        (1.005, "$1.00"),  # binary 1.005 is just under it
        (1234.5, "$1,234.50"),
    ],
)
def test_format_usd_keeps_four_decimals_under_ten_cents(value: float, text: str) -> None:
    assert fmt.format_usd(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.00 s"),
        (0.85, "0.85 s"),
        (9.99, "9.99 s"),
        (9.999, "10.0 s"),
        (12.34, "12.3 s"),
        (59.94, "59.9 s"),
        (59.97, "1 min 00 s"),
        (245.2, "4 min 05 s"),
        (3599.4, "59 min 59 s"),
        (3599.6, "1 h 00 min"),
        (7380, "2 h 03 min"),
    ],
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert fmt.format_seconds(seconds) == text


@pytest.mark.parametrize(
    ("text", "limit", "line"),
    [
        ("\n  \n  first line  \nsecond", 80, "first line"),
        ("abcdef", 6, "abcdef"),
        ("abcdefg", 6, "abcde…"),
        ("", 10, ""),
        (" \n\t\n", 10, ""),
    ],
)
def test_first_line_is_the_first_non_blank_line_cut_to_the_limit(
    text: str, limit: int, line: str
) -> None:
    assert fmt.first_line(text, limit) == line
    assert len(fmt.first_line(text * 50, limit)) <= limit


def test_format_is_a_leaf() -> None:
    """Every layer may import it, so it may import nothing of rlm_cli."""
    tree = ast.parse(Path(fmt.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
    assert not [name for name in imported if name.startswith("rlm_cli")]


def test_cache_stats_prints_sizes_as_inspect_does(tmp_path: Path) -> None:
    """`rlm cache stats` once printed 1,536 bytes as "1.5 KB" counting 1,024 to the KB, while
    `rlm inspect` counts 1,000; both now say what format_bytes says."""
    stats = CacheStats(
        path=tmp_path / "c.sqlite3",
        exists=True,
        entries=3,
        bytes_on_disk=2_500_000,
        oldest=0.0,
        newest=0.0,
        original_cost_usd=0.0,
        unknown_cost_entries=0,
    )
    assert dict(cache_lines(stats))["size"] == "2.5 MB" == fmt.format_bytes(2_500_000)

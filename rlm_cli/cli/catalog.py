"""`rlm models` and `rlm providers`: what the catalog knows, as tables on stdout."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import typer

from rlm_cli.cli.common import PricesOption
from rlm_cli.providers.catalog import Catalog, providers

if TYPE_CHECKING:
    from rich.table import Table


def models(
    prices: PricesOption = None,
) -> None:
    """List the known models: context window, max output, and prices per million tokens."""
    catalog = Catalog(prices)
    table = _table(
        "model",
        "window",
        "max output",
        "reasoning",
        "input $",
        "cached $",
        "cache write $",
        "output $",
    )
    for name in catalog.names():
        facts = catalog.facts(name)
        price = facts.price

        def money(value: float | None) -> str:
            return "-" if value is None else f"{value:g}"

        table.add_row(
            name,
            f"{facts.window:,}",
            f"{facts.max_output:,}",
            "yes" if facts.reasoning else "",
            money(price.input if price else None),
            money(price.cached_input if price else None),
            money(price.cache_write if price else None),
            money(price.output if price else None),
        )
    _print(table)
    typer.echo("Models not listed work too; their cost is reported as unknown (null).")


def providers_command() -> None:
    """List the providers and presets, their endpoints, and whether their API key is set."""
    table = _table("provider", "kind", "endpoint", "key variable", "key")
    for info in providers().values():
        if info.kind == "scripted" or info.key_env is None:
            status = "not needed"
        else:
            status = (
                "set" if os.environ.get(info.key_env) else ("optional" if info.local else "missing")
            )
        table.add_row(info.name, info.kind, info.base_url or "default", info.key_env or "-", status)
    _print(table)


def _table(*columns: str) -> Table:
    from rich.table import Table  # here: rich's tables cost `rlm --help` nothing

    return Table(*columns)


def _print(table: Table) -> None:
    from rich.console import Console

    # Piped into a file or another program, tables keep whole cells rather than fit 80 columns.
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)

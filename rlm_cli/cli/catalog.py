"""`rlm models` and `rlm providers`: what the catalog knows, as tables on stdout."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from rlm_cli.cli.common import PricesOption
from rlm_cli.providers.catalog import Catalog, providers


def models(
    prices: PricesOption = None,
) -> None:
    """List the known models: context window, max output, and prices per million tokens."""
    catalog = Catalog(prices)
    table = Table(
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
    _console().print(table)
    typer.echo("Models not listed work too; their cost is reported as unknown (null).")


def providers_command() -> None:
    """List the providers and presets, their endpoints, and whether their API key is set."""
    table = Table("provider", "kind", "endpoint", "key variable", "key")
    for info in providers().values():
        if info.kind == "scripted" or info.key_env is None:
            status = "not needed"
        else:
            status = (
                "set" if os.environ.get(info.key_env) else ("optional" if info.local else "missing")
            )
        table.add_row(info.name, info.kind, info.base_url or "default", info.key_env or "-", status)
    _console().print(table)


def _console() -> Console:
    # Piped into a file or another program, tables keep whole cells rather than fit 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=200)

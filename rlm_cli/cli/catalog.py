"""`rlm models` and `rlm providers`: what the catalog knows, as a table on a terminal, plain
tab-separated rows into a pipe or a file, or JSON with --json."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer

from rlm_cli.cli.common import PricesOption
from rlm_cli.providers.catalog import Catalog, providers

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON array instead of rows.")]


def models(prices: PricesOption = None, as_json: JsonOption = False) -> None:
    """List the known models: context window, input limit, max output, and prices per million
    tokens (USD). Models not listed work too; their cost is reported as unknown (null).

    Examples:

    \b
      rlm models
      rlm models --json
    """
    catalog = Catalog(prices)
    entries = []
    for name in catalog.names():
        facts = catalog.facts(name)
        price = facts.price
        entries.append(
            {
                "model": name,
                "window": facts.window,
                "input_limit": facts.input_limit,
                "max_output": facts.max_output,
                "reasoning": facts.reasoning,
                "input_usd": price.input if price else None,
                "cached_input_usd": price.cached_input if price else None,
                "cache_write_usd": price.cache_write if price else None,
                "output_usd": price.output if price else None,
            }
        )
    _show(entries, as_json)
    if not as_json and sys.stdout.isatty():
        typer.echo("Models not listed work too; their cost is reported as unknown (null).")


def providers_command(as_json: JsonOption = False) -> None:
    """List the providers and presets: their kind, endpoint, the variable holding their key,
    and whether it is set (the key itself is never shown).

    Examples:

    \b
      rlm providers
      rlm providers --json
    """
    entries = []
    for info in providers().values():
        if info.kind == "scripted" or info.key_env is None:
            status = "not needed"
        else:
            status = (
                "set" if os.environ.get(info.key_env) else ("optional" if info.local else "missing")
            )
        entries.append(
            {
                "provider": info.name,
                "kind": info.kind,
                "base_url": info.base_url,
                "key_env": info.key_env,
                "key": status,
                "local": info.local,
            }
        )
    _show(entries, as_json)


def _show(entries: list[dict[str, Any]], as_json: bool) -> None:
    """`entries` (one dict per row, the same keys in each) as JSON, a table on a terminal, or
    tab-separated rows under a header line elsewhere, which `cut` and `awk` read as they are."""
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    columns = list(entries[0]) if entries else []
    rows = [[_cell(entry[column]) for column in columns] for entry in entries]
    if not sys.stdout.isatty():
        for row in [columns, *rows]:
            typer.echo("\t".join(row))
        return
    from rich.console import Console  # here: rich's tables cost `rlm --help` nothing
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if sys.stdout.isatty() else str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)

"""`rlm inspect INPUTS...`: what a run would load, what it would skip and why, and what it might
cost (the estimate is the library's: `rlm_cli.engine.estimate`)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from rlm_cli.cli.common import (
    ConfigOption,
    ExcludeOption,
    IncludeOption,
    MaxFileSizeOption,
    MaxMemoryShareOption,
    PricesOption,
    errors_exit,
    parse_size,
    piped_stdin,
    warn,
)
from rlm_cli.ui.safe import json_safe, terminal_safe

if TYPE_CHECKING:
    from rlm_cli.config import Settings
    from rlm_cli.engine.estimate import CostRange
    from rlm_cli.inputs import Inputs


def inspect_command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[INPUTS]...",
            help="Files, directories or archives, as for `rlm ask`; '-' or none reads piped stdin.",
            show_default=False,
        ),
    ] = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    max_file_size: MaxFileSizeOption = None,
    max_memory_share: MaxMemoryShareOption = None,
    provider: Annotated[
        str | None, typer.Option(help="Root model provider, for the cost estimate.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Root model, for the cost estimate.")] = None,
    sub_provider: Annotated[str | None, typer.Option(help="Worker model provider.")] = None,
    sub_model: Annotated[
        str | None, typer.Option(help="Worker model, for the cost estimate.")
    ] = None,
    max_iterations: Annotated[
        int | None, typer.Option(help="Root turns at most (the high end of the cost).")
    ] = None,
    prices: PricesOption = None,
    config: ConfigOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
) -> None:
    """Show what `rlm ask` would load from INPUTS: every file with its size, estimated tokens and
    encoding, every skipped file or folder and why, the totals, and a cost range for the
    configured root and worker models. Reads nothing whole and calls no model."""
    from rlm_cli.api import resolve_inputs
    from rlm_cli.config import load_settings
    from rlm_cli.engine.estimate import cost_range

    overrides = {
        "provider": provider,
        "model": model,
        "sub_provider": sub_provider,
        "sub_model": sub_model,
        "max_iterations": max_iterations,
        "prices": prices,
        "max_memory_share": max_memory_share,
        "include": tuple(include or ()) or None,
        "exclude": tuple(exclude or ()) or None,
    }
    with errors_exit():
        overrides["max_file_size"] = parse_size(max_file_size)
        settings = load_settings(overrides, config)
        # What a run would read, without being one: a config file's `trace` is left alone.
        resolved = resolve_inputs(list(inputs or []), piped_stdin(), settings, warn=warn)
        try:
            cost = cost_range(resolved.total_tokens, settings)
            if as_json:
                _print_json(resolved, settings, cost)
            else:
                _print_table(resolved, settings, cost)
        finally:
            resolved.cleanup()


def _print_table(inputs: Inputs, settings: Settings, cost: CostRange) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rlm_cli.engine.estimate import COST_NOTE
    from rlm_cli.format import format_bytes
    from rlm_cli.inputs.report import one_line, rows

    table = Table("path", "size", "est. tokens", "encoding", "status")
    for row in rows(inputs):
        status = row.status if row.warning is None else f"{row.status} (warning: {row.warning})"
        table.add_row(
            Text(terminal_safe(row.path)),  # a Text, not markup: names may hold [brackets]
            "" if row.size is None else format_bytes(row.size),
            "" if row.tokens is None else f"{row.tokens:,}",
            row.encoding,
            Text(terminal_safe(status)),
        )
    # Piped into a file or another program, tables keep whole cells rather than fit 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=100_000)
    console.print(table)
    console.print(terminal_safe(one_line(inputs)), markup=False, highlight=False)
    console.print(
        f"cost with root {settings.root_model} and worker {settings.worker_model}: "
        f"{cost.describe()} ({COST_NOTE})",
        markup=False,
        highlight=False,
    )


def _print_json(inputs: Inputs, settings: Settings, cost: CostRange) -> None:
    from rlm_cli.engine.estimate import COST_NOTE
    from rlm_cli.inputs.report import rows

    totals = inputs.summary()
    totals.pop("names", None)
    data = {
        "files": [row.to_json() for row in rows(inputs)],
        "totals": totals,
        "cost": {
            "root_model": settings.root_model,
            "worker_model": settings.worker_model,
            **cost.to_json(),
            "assumptions": COST_NOTE,
        },
    }
    text = json_safe(json.dumps(data, ensure_ascii=False)) + "\n"
    sys.stdout.buffer.write(text.encode("utf-8", "replace"))  # no lone surrogates on stdout
    sys.stdout.flush()

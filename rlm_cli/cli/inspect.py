"""`rlm inspect INPUTS...`: what a run would load, what it would skip and why, and what it might
cost; and the same summary as one line for `rlm ask` (and its `--dry-run`)."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from rlm_cli.cli.common import ConfigOption, PricesOption, piped_stdin
from rlm_cli.errors import RlmError, UsageError
from rlm_cli.ui.safe import json_safe, terminal_safe

if TYPE_CHECKING:
    from rlm_cli.config import Settings
    from rlm_cli.inputs import InputOptions, Inputs

# The assumptions behind a cost range, kept together so the printed explanation stays true. A
# run's cost cannot be known before it runs; the range brackets it. Low: the root model alone, a
# few turns, no sub-calls (a question a grep answers). High: every turn used, and the worker model
# reading every input token once (with prompt overhead and short replies): a map over all chunks.
LOW_TURNS = 3
SYSTEM_TOKENS = 1_500  # system prompt and first message, sent every turn
TURN_GROWTH = 1_500  # each turn adds a reply and its (capped) cell output to the history
TURN_OUTPUT = 500
SUBCALL_OVERHEAD = 1.1  # instructions around each chunk
SUBCALL_REPLY = 0.05  # replies, as a share of what the worker read
COST_NOTE = (
    f"low: the root model alone, {LOW_TURNS} turns, no sub-calls; high: every turn used and the "
    "worker model reading every input token once"
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b(?:ytes?)?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}

IncludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        help="Load only files matching this glob (.gitignore syntax, e.g. '*.py', 'src/**'). "
        "Repeatable. Applies inside directories and archives. Secret files (.env, keys, "
        "credentials) are skipped there unless a glob names them ('.env', '*.pem').",
        show_default=False,
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        help="Skip files and folders matching this glob (.gitignore syntax, e.g. 'tests/', "
        "'*.min.js'). Repeatable.",
        show_default=False,
    ),
]
MaxFileSizeOption = Annotated[
    str | None,
    typer.Option(
        help="Skip files in directories and archives larger than this (e.g. 500KB, 200MB, 2GiB). "
        "Default: 100MiB.",
        show_default=False,
    ),
]
MaxMemoryShareOption = Annotated[
    float | None,
    typer.Option(
        help="Refuse inputs larger than this share of memory (0-0.9). Default: 0.4.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class Selection:
    """The input flags that are not settings: which files to take."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


def parse_size(text: str | None) -> int | None:
    """`200MB`, `1.5GiB`, `4096` -> bytes (decimal units; `KiB`, `MiB`, `GiB` binary)."""
    if text is None:
        return None
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"--max-file-size {text!r}: give a size such as 500KB, 200MB or 2GiB")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    base = 1024 if unit.endswith(("ib", "i")) else 1000
    scale = base ** " kmgt".index(unit[0]) if unit and unit[0] in "kmgt" else 1
    size = int(number * scale)
    if size < 1:
        raise UsageError(f"--max-file-size {text!r}: must be at least 1 byte")
    return size


def input_options(settings: Settings, selection: Selection) -> InputOptions:
    from rlm_cli.inputs import InputOptions

    return InputOptions(
        include=selection.include,
        exclude=selection.exclude,
        max_file_bytes=settings.max_file_size,
        max_memory_share=settings.max_memory_share,
        warn=_warn,
    )


def _warn(message: str) -> None:
    """Warnings about inputs go to stderr as they are found, whatever the view (--quiet too):
    a named file that looks like a secret is about to leave the machine."""
    print(f"rlm: warning: {terminal_safe(message)}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class CostRange:
    low: float | None  # USD; None when a model's price is unknown
    high: float | None
    unknown: tuple[str, ...]  # models without a known price

    def describe(self) -> str:
        if self.low is None or self.high is None:
            return f"cost unknown (no price for {', '.join(self.unknown)}; see `rlm models`)"
        if self.high == 0:
            return "no cost (local or scripted models)"
        return f"est. cost {usd(self.low)}–{usd(self.high)}"

    def to_json(self) -> dict[str, Any]:
        return {"low_usd": self.low, "high_usd": self.high, "unknown_price": list(self.unknown)}


def _prices(settings: Settings) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """(input, output) USD per million tokens of the root and the worker model; None for a model
    whose price is unknown. Local presets and the scripted provider are free: their cost is 0,
    known, exactly as the providers charge it."""
    from rlm_cli.providers.catalog import Catalog, provider_info

    catalog = Catalog(settings.prices)

    def price(provider: str, model: str) -> tuple[float, float] | None:
        info = provider_info(provider)
        if info.local or info.kind == "scripted":
            return 0.0, 0.0
        facts = catalog.facts(model)
        return None if facts.price is None else (facts.price.input, facts.price.output)

    return (
        price(settings.provider, settings.root_model),
        price(settings.worker_provider, settings.worker_model),
    )


def unpriced_models(settings: Settings) -> tuple[str, ...]:
    """The models of these settings whose spending no cost budget can see."""
    root, worker = _prices(settings)
    unknown = [settings.root_model] if root is None else []
    unknown += [settings.worker_model] if worker is None else []
    return tuple(dict.fromkeys(unknown))


def warn_unenforceable_cost(settings: Settings) -> None:
    """Before anything is spent: a cost budget counts a call of unknown price as nothing, so
    `--max-cost` over such a model would never stop the run. Say so, and what bounds it instead."""
    unknown = unpriced_models(settings) if settings.max_cost else ()
    if not unknown:
        return
    origin = settings.origin.get("max_cost", "flag")
    name = "--max-cost" if origin == "flag" else f"max_cost ({origin})"
    models = " and ".join(unknown)
    whose = "its price is" if len(unknown) == 1 else "their prices are"
    _warn(
        f"{name} cannot be enforced for model{'s' if len(unknown) > 1 else ''} {models}: "
        f"{whose} unknown; give prices with --prices FILE, or bound the run with --max-tokens"
    )


def cost_range(input_tokens: int, settings: Settings) -> CostRange:
    """What a run over `input_tokens` might cost with these settings' models and prices."""
    root, worker = _prices(settings)
    if root is None or worker is None:
        return CostRange(None, None, unpriced_models(settings))

    def root_cost(turns: int) -> float:
        tokens_in = turns * SYSTEM_TOKENS + TURN_GROWTH * turns * (turns - 1) // 2
        return (tokens_in * root[0] + turns * TURN_OUTPUT * root[1]) / 1e6

    low = root_cost(min(LOW_TURNS, settings.max_iterations))
    read = input_tokens * SUBCALL_OVERHEAD
    high = (
        root_cost(settings.max_iterations)
        + (read * worker[0] + read * SUBCALL_REPLY * worker[1]) / 1e6
    )
    return CostRange(low, high, ())


def summary_line(inputs: Inputs, settings: Settings, cost: CostRange | None = None) -> str:
    """The one line `rlm ask` prints on stderr before the first model call."""
    from rlm_cli.inputs.report import one_line

    cost = cost or cost_range(inputs.total_tokens, settings)
    return one_line(inputs, cost.describe())


def dry_run(
    paths: list[str],
    overrides: dict[str, Any],
    config: Path | None,
    selection: Selection,
    stdin: BinaryIO | None,
) -> int:
    """`rlm ask --dry-run`: resolve the inputs and print the summary, with no provider (so no
    API key) and no model call."""
    from rlm_cli.config import load_settings
    from rlm_cli.inputs import resolve

    settings = load_settings(overrides, config)
    inputs = resolve(paths, stdin, input_options(settings, selection))
    try:
        print(f"rlm: {summary_line(inputs, settings)}", file=sys.stderr)
        warn_unenforceable_cost(settings)  # what the real run would warn of
        print("rlm: dry run: no model was called", file=sys.stderr)
    finally:
        inputs.cleanup()
    return 0


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
    from rlm_cli.config import load_settings
    from rlm_cli.inputs import resolve

    overrides = {
        "provider": provider,
        "model": model,
        "sub_provider": sub_provider,
        "sub_model": sub_model,
        "max_iterations": max_iterations,
        "prices": prices,
        "max_memory_share": max_memory_share,
    }
    try:
        overrides["max_file_size"] = parse_size(max_file_size)
        settings = load_settings(overrides, config)
        selection = Selection(tuple(include or ()), tuple(exclude or ()))
        resolved = resolve(list(inputs or []), piped_stdin(), input_options(settings, selection))
        try:
            cost = cost_range(resolved.total_tokens, settings)
            if as_json:
                _print_json(resolved, settings, cost)
            else:
                _print_table(resolved, settings, cost)
        finally:
            resolved.cleanup()
    except RlmError as exc:
        typer.echo(f"rlm: error: {terminal_safe(str(exc))}", err=True)
        raise typer.Exit(exc.exit_code) from None


def _print_table(inputs: Inputs, settings: Settings, cost: CostRange) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from rlm_cli.inputs import format_bytes
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


def usd(value: float) -> str:
    """Dollars as the summary shows them: cents, or four decimals under ten cents."""
    return f"${value:,.2f}" if value >= 0.1 or value == 0 else f"${value:.4f}"

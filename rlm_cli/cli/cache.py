"""`rlm cache stats` and `rlm cache clear`: the on-disk cache of model replies."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rlm_cli.cli.common import PLAIN_HELP, errors_exit
from rlm_cli.format import format_bytes

if TYPE_CHECKING:
    from rlm_cli.engine.cache import CacheStats

cache_app = typer.Typer(
    name="cache",
    help=(
        "Show or clear the cache of model replies (SQLite, by default "
        "$XDG_CACHE_HOME/rlm/replies.sqlite3 or ~/.cache/rlm/replies.sqlite3)."
    ),
    no_args_is_help=True,
    rich_markup_mode=PLAIN_HELP,
)

PathOption = Annotated[
    Path | None,
    typer.Option(
        "--path",
        help="Use this cache file instead of the default one.",
        show_default=False,
    ),
]


@cache_app.command()
def stats(
    path: PathOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of lines.")
    ] = False,
) -> None:
    """How many replies are cached, the space they take, and what they first cost."""
    from rlm_cli.engine.cache import ReplyCache

    with errors_exit():
        info = ReplyCache(path).stats()
    if json_output:
        typer.echo(json.dumps(info.to_json(), indent=2))
        return
    for label, value in _lines(info):
        typer.echo(f"{label:<15}{value}")


@cache_app.command()
def clear(path: PathOption = None) -> None:
    """Remove every cached reply and give the space back."""
    from rlm_cli.engine.cache import ReplyCache

    with errors_exit():
        cache = ReplyCache(path)
        removed = cache.clear()
        cache.close()
    typer.echo(f"rlm: removed {removed:,} cached {'reply' if removed == 1 else 'replies'}")


def _lines(info: CacheStats) -> list[tuple[str, str]]:
    if not info.exists:
        return [("path", str(info.path)), ("entries", "0 (no cache file yet)")]
    cost = f"${info.original_cost_usd:,.4f}"
    if info.unknown_cost_entries:
        cost += f" (+ {info.unknown_cost_entries:,} of unknown price)"
    return [
        ("path", str(info.path)),
        ("entries", f"{info.entries:,}"),
        ("size", format_bytes(info.bytes_on_disk)),  # as `rlm inspect` counts
        ("oldest", _local_time(info.oldest)),
        ("newest", _local_time(info.newest)),
        ("original cost", cost),
    ]


def _local_time(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))

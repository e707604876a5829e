"""The `rlm` command line: Typer commands only. Each parses flags, builds Settings, picks a view
and maps errors to exit codes; the work happens in rlm_cli.api and below."""

from __future__ import annotations

from typing import Annotated

import typer

from rlm_cli import __version__
from rlm_cli.cli.ask import EPILOG, ask
from rlm_cli.cli.cache import cache_app
from rlm_cli.cli.catalog import models, providers_command
from rlm_cli.cli.doctor import doctor
from rlm_cli.cli.inspect import inspect_command
from rlm_cli.cli.trace import trace_app

app = typer.Typer(
    name="rlm",
    help=(
        "Ask questions of files too big for any model's context window. The input lives as the "
        "variable `context` in a sandboxed Python REPL; a root model writes code to explore it "
        "and calls a worker model on pieces (Recursive Language Models, arXiv 2512.24601)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(no_args_is_help=True, epilog=EPILOG)(ask)
app.command()(models)
app.command("providers")(providers_command)
app.command("inspect")(inspect_command)
app.command()(doctor)
app.add_typer(trace_app)
app.add_typer(cache_app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rlm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    app()

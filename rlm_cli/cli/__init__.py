"""The `rlm` command line: Typer commands only. Each parses flags, builds Settings, picks a view
and maps errors to exit codes; the work happens in rlm_cli.api and below."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, NoReturn

import typer

from rlm_cli import __version__
from rlm_cli.cli.ask import EPILOG, ask
from rlm_cli.cli.cache import cache_app
from rlm_cli.cli.catalog import models, providers_command
from rlm_cli.cli.common import PLAIN_HELP, SectionedCommand
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
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=PLAIN_HELP,
)
app.command(no_args_is_help=True, epilog=EPILOG, cls=SectionedCommand)(ask)
app.command()(models)
app.command("providers")(providers_command)
app.command("inspect", cls=SectionedCommand)(inspect_command)
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
    """The `rlm` program. Once the command is done (its answer and trace written and closed, its
    worker gone), the process leaves at once: the interpreter's own exit would spend up to half
    a second collecting every object the run made, which the system frees anyway."""
    try:
        # Named `rlm` however it was started (`python -m rlm_cli` too): in usage lines, and
        # in the variable shell completion reads (_RLM_COMPLETE).
        app(prog_name="rlm")
        code: object = 0
    except SystemExit as done:
        code = done.code
    leave(code)


def leave(code: object) -> NoReturn:
    """Flush what is written and end the process with `code` (SystemExit's meaning: None is 0,
    a number is the status, anything else is printed as the error and is 1)."""
    if code is None:
        code = 0
    if not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        # A reader that has gone (`rlm ask ... | head -1`) takes nothing more: the status is
        # still the command's.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)

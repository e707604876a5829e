"""What several commands share: error reporting and the options they have in common."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from rlm_cli.errors import RlmError
from rlm_cli.ui.safe import terminal_safe

ConfigOption = Annotated[
    Path | None,
    typer.Option(help="Config file (YAML). Default: $RLM_CONFIG or ~/.config/rlm/config.yaml."),
]
PricesOption = Annotated[
    str | None, typer.Option(help="YAML file of model prices laid over the built-in table.")
]


@contextlib.contextmanager
def errors_exit() -> Iterator[None]:
    """One line on stderr and the error's exit code, instead of a traceback."""
    try:
        yield
    except RlmError as error:
        typer.echo(f"rlm: error: {terminal_safe(str(error))}", err=True)
        raise typer.Exit(error.exit_code) from None


def piped_stdin() -> BinaryIO | None:
    """Standard input when something is piped in; None on a terminal or when it is closed."""
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return None
    return stdin.buffer

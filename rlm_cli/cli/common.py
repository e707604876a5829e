"""What several commands share: error reporting and the options they have in common."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from rlm_cli.errors import RlmError

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
        typer.echo(f"rlm: error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None

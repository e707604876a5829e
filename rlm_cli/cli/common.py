"""What several commands share: error reporting and the options they have in common."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
from typer import _click as click
from typer.core import TyperCommand

from rlm_cli.config import FLAGS, SPECS, setting_help
from rlm_cli.errors import RlmError, UsageError
from rlm_cli.ui.safe import terminal_safe

# Help and usage errors in click's plain layout, not Typer's rich panels: rendering those
# imports rich's markdown and layout modules, which took `rlm --help` from 0.25 s to 0.5 s.
PLAIN_HELP = None

ConfigOption = Annotated[
    Path | None,
    typer.Option(help="Config file (YAML). Default: $RLM_CONFIG or ~/.config/rlm/config.yaml."),
]


# The section of --help that options of no setting sit in.
RUN_SECTION = "Running and output"


def setting_option(name: str) -> Any:
    """The option of setting `name`: its flag, help and default, as the setting declares them
    (rlm_cli.config), so no flag's help is written twice, under its group's heading."""
    flag = FLAGS[name]
    return typer.Option(
        flag, help=setting_help(name), show_default=False, rich_help_panel=section_of(name)
    )


def section_of(name: str) -> str:
    """The --help section of setting `name`: its group in the declaration, without the gloss
    after a colon ("Limits: a run stops at..." is "Limits")."""
    return SPECS[name].group.split(":")[0]


class SectionedCommand(TyperCommand):
    """A command whose --help lists its options in sections (each option's `rich_help_panel`,
    which plain help would otherwise ignore), in the order the options are declared."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                section = "Arguments"
            else:
                section = getattr(param, "rich_help_panel", None) or RUN_SECTION
            sections.setdefault(section, []).append(record)
        if RUN_SECTION in sections:  # the options of the command itself, after the settings
            sections[RUN_SECTION] = sections.pop(RUN_SECTION)
        for section, records in sections.items():
            with formatter.section(section):
                formatter.write_dl(records)


PricesOption = Annotated[str | None, setting_option("prices")]


@contextlib.contextmanager
def errors_exit() -> Iterator[None]:
    """One line on stderr and the error's exit code, instead of a traceback."""
    try:
        yield
    except RlmError as error:
        say_error(error)
        raise typer.Exit(error.exit_code) from None


def say_error(error: RlmError) -> None:
    """The one line every command prints for a failure (its text made safe for a terminal)."""
    print(f"rlm: error: {terminal_safe(str(error))}", file=sys.stderr)


def piped_stdin() -> BinaryIO | None:
    """Standard input when something is piped in; None on a terminal or when it is closed."""
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return None
    return stdin.buffer


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b(?:ytes?)?)?\s*$", re.IGNORECASE)

IncludeOption = Annotated[list[str] | None, setting_option("include")]
ExcludeOption = Annotated[list[str] | None, setting_option("exclude")]
MaxFileSizeOption = Annotated[str | None, setting_option("max_file_size")]
MaxMemoryShareOption = Annotated[float | None, setting_option("max_memory_share")]


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


def warn(message: str) -> None:
    """Warnings about inputs go to stderr as they are found, whatever the view (--quiet too):
    a named file that looks like a secret is about to leave the machine."""
    print(f"rlm: warning: {terminal_safe(message)}", file=sys.stderr, flush=True)

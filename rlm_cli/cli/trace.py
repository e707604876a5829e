"""`rlm trace show` and `rlm trace export`: a recorded run, drawn or converted."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

from rlm_cli.cli.common import PLAIN_HELP, errors_exit
from rlm_cli.errors import UsageError

trace_app = typer.Typer(
    name="trace",
    help="Show or export a trace written by `rlm ask --trace FILE`.",
    no_args_is_help=True,
    rich_markup_mode=PLAIN_HELP,
)


class ExportFormat(enum.StrEnum):
    json = "json"
    html = "html"


@trace_app.command()
def show(
    path: Annotated[Path, typer.Argument(help="A trace file (JSON Lines).", show_default=False)],
    iteration: Annotated[
        int | None,
        typer.Option(
            help="Show only this iteration, in full: prompts, code, outputs and replies uncut."
        ),
    ] = None,
) -> None:
    """Draw a finished, failed or partial run as a tree, every iteration open."""
    from rich.console import Console

    from rlm_cli.trace.reader import fold_trace, load_trace
    from rlm_cli.ui.model import SHOWN
    from rlm_cli.ui.tree import render

    with errors_exit():
        trace = load_trace(path)
        # The fold the live view made and the exports make, keeping every word, made safe.
        run = fold_trace(trace, SHOWN)
        numbers = [i.iteration for i in run.iterations]
        if iteration is not None and iteration not in numbers:
            raise UsageError(
                f"{path}: no iteration {iteration}; the trace has {', '.join(map(str, numbers)) or 'none'}"
            )
        last_ts = trace.events[-1].ts if trace.events else None
        console = Console(soft_wrap=False)
        console.print(render(run, expanded=True, only_iteration=iteration, now=last_ts))
        if not trace.complete:
            console.print(
                "[yellow]The trace ends without a summary: the run was killed, or is still running.[/]"
            )


@trace_app.command("export")
def export_command(
    path: Annotated[Path, typer.Argument(help="A trace file (JSON Lines).", show_default=False)],
    format: Annotated[
        ExportFormat,
        typer.Option(
            "--format", "-f", help="json: the nested trajectory; html: one self-contained page."
        ),
    ] = ExportFormat.json,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of to stdout.")
    ] = None,
) -> None:
    """Convert a trace: the nested run -> iterations -> cells -> sub-calls document (JSON), or a
    self-contained HTML page with the tree, a token/cost table and a sub-call timeline."""
    from rlm_cli.trace.export import export
    from rlm_cli.trace.reader import load_trace

    with errors_exit():
        text = export(load_trace(path), format.value)
        if output is None:
            sys.stdout.write(text)
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{output}: cannot write the export ({exc.strerror})") from None
        typer.echo(f"rlm: wrote {output}", err=True)

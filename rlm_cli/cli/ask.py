"""`rlm ask [INPUTS...] QUESTION`: the command's flags. What it does is in cli/ask_run.py,
imported only when it runs, so `rlm --help` loads neither the engine nor the providers."""

from __future__ import annotations

from typing import Annotated

import typer

from rlm_cli.cli.common import ConfigOption, section_of, setting_option
from rlm_cli.config import FLAG_PARAMS, overrides_from_flags, setting_help
from rlm_cli.errors import EXIT_CODES
from rlm_cli.providers.catalog import preset_names
from rlm_cli.ui import ViewName

# "\b" keeps click from re-wrapping the paragraph after it: each example stays one line, to
# copy as it is.
EPILOG = (
    "Examples:\n\n\b\n"
    '  rlm ask server.log "Which service logged the most errors?"\n'
    '  cat big.log | rlm ask "When did the outage start?"\n'
    '  rlm ask src/ README.md "Where is the retry policy configured?" --json\n'
    '  rlm ask --provider scripted --script samples/find_code.yaml samples/haystack.log "What is the code?"\n\n'
    "Exit codes: " + " · ".join(f"{code} {what}" for code, what in EXIT_CODES.items())
)


def ask(
    args: Annotated[
        list[str],
        typer.Argument(
            metavar="[INPUTS]... QUESTION",
            help="Files or directories to load as `context`, then the question (last). "
            "'-' or no inputs reads piped stdin.",
            show_default=False,
        ),
    ],
    # Each setting's flag takes its help (and default) from the setting's one declaration in
    # rlm_cli.config; `overrides_from_flags` maps the values back by parameter name.
    provider: Annotated[
        str | None,
        typer.Option(
            help=f"{setting_help('provider')} Known: {', '.join(preset_names())}.",
            show_default=False,
            rich_help_panel=section_of("provider"),
        ),
    ] = None,
    model: Annotated[str | None, setting_option("model")] = None,
    sub_provider: Annotated[str | None, setting_option("sub_provider")] = None,
    sub_model: Annotated[str | None, setting_option("sub_model")] = None,
    base_url: Annotated[str | None, setting_option("base_url")] = None,
    sub_base_url: Annotated[str | None, setting_option("sub_base_url")] = None,
    api_key_env: Annotated[str | None, setting_option("api_key_env")] = None,
    sub_api_key_env: Annotated[str | None, setting_option("sub_api_key_env")] = None,
    temperature: Annotated[float | None, setting_option("temperature")] = None,
    max_output_tokens: Annotated[int | None, setting_option("max_output_tokens")] = None,
    reasoning_effort: Annotated[str | None, setting_option("reasoning_effort")] = None,
    max_retries: Annotated[int | None, setting_option("max_retries")] = None,
    request_timeout: Annotated[float | None, setting_option("request_timeout")] = None,
    sub_window: Annotated[int | None, setting_option("sub_window")] = None,
    prices: Annotated[str | None, setting_option("prices")] = None,
    script: Annotated[str | None, setting_option("script")] = None,
    config: ConfigOption = None,
    max_iterations: Annotated[int | None, setting_option("max_iterations")] = None,
    cell_timeout: Annotated[float | None, setting_option("cell_timeout")] = None,
    max_concurrency: Annotated[int | None, setting_option("max_concurrency")] = None,
    max_depth: Annotated[int | None, setting_option("max_depth")] = None,
    max_cost: Annotated[float | None, setting_option("max_cost")] = None,
    max_tokens: Annotated[int | None, setting_option("max_tokens")] = None,
    max_subcalls: Annotated[int | None, setting_option("max_subcalls")] = None,
    timeout: Annotated[float | None, setting_option("timeout")] = None,
    no_cache: Annotated[bool, setting_option("cache")] = False,
    cache_root: Annotated[bool, setting_option("cache_root")] = False,
    system_prompt: Annotated[str | None, setting_option("system_prompt")] = None,
    direct_below: Annotated[int | None, setting_option("direct_below")] = None,
    output_limit: Annotated[int | None, setting_option("output_limit")] = None,
    include: Annotated[list[str] | None, setting_option("include")] = None,
    exclude: Annotated[list[str] | None, setting_option("exclude")] = None,
    max_file_size: Annotated[str | None, setting_option("max_file_size")] = None,
    max_memory_share: Annotated[float | None, setting_option("max_memory_share")] = None,
    sandbox: Annotated[str | None, setting_option("sandbox")] = None,
    allow_weaker_sandbox: Annotated[bool, setting_option("allow_weaker_sandbox")] = False,
    worker_memory: Annotated[int | None, setting_option("worker_memory_mb")] = None,
    redact_secrets: Annotated[bool, setting_option("redact_secrets")] = False,
    strict: Annotated[bool, setting_option("strict")] = False,
    trace: Annotated[str | None, setting_option("trace")] = None,
    trace_full: Annotated[bool, setting_option("trace_full")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Resolve the inputs, print their one-line summary and stop: no model is called "
            "(and no API key is needed).",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Do not ask before a run whose high cost estimate passes confirm_above_usd "
            "(default $5). Only a terminal is ever asked; other runs go on without waiting.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object with the answer, status and usage (with --dry-run: "
            "the inputs and the cost estimate).",
        ),
    ] = False,
    view: Annotated[
        ViewName,
        typer.Option(
            help="Progress on stderr: tree (live, on a terminal), plain (one line per step), "
            "none, or auto (tree on a terminal, else plain)."
        ),
    ] = ViewName.auto,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Show no progress on stderr (--view none).")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    """Answer QUESTION about the INPUTS (files, directories, or piped stdin).

    The answer alone goes to stdout; progress goes to stderr.
    """
    given = {name: value for name, value in locals().items() if name in FLAG_PARAMS}
    given.pop("max_file_size")  # "200MB": parsed with the other settings, so a bad one is traced
    overrides = overrides_from_flags(given)
    from rlm_cli.cli.ask_run import Flags, raw_main

    flags = Flags(
        as_json=as_json,
        view="none" if quiet else view.value,
        debug=debug,
        dry_run=dry_run,
        assume_yes=yes,
        max_file_size=max_file_size,
    )
    raise typer.Exit(raw_main(args, overrides, config, flags))

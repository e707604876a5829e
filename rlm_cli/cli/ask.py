"""`rlm ask [INPUTS...] QUESTION`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rlm_cli.cli.common import ConfigOption, PricesOption, piped_stdin
from rlm_cli.cli.inspect import (
    ExcludeOption,
    IncludeOption,
    MaxFileSizeOption,
    MaxMemoryShareOption,
    Selection,
    parse_size,
)
from rlm_cli.errors import (
    EXIT_CODES,
    InternalError,
    Interrupted,
    NotConfirmed,
    RlmError,
    SubcallsFailed,
    UsageError,
)
from rlm_cli.events import Event, RunFinished, RunStarted, SubcallFinished
from rlm_cli.trace.writer import TraceWriter
from rlm_cli.ui import ViewName
from rlm_cli.ui.safe import json_safe, terminal_safe

if TYPE_CHECKING:
    from rlm_cli.api import RLM
    from rlm_cli.engine.run import RunResult
    from rlm_cli.inputs import Inputs

EPILOG = (
    "Examples:\n\n"
    '  rlm ask server.log "Which service logged the most errors?"\n\n'
    '  cat big.log | rlm ask "When did the outage start?"\n\n'
    '  rlm ask src/ README.md "Where is the retry policy configured?" --json\n\n'
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
    provider: Annotated[
        str | None,
        typer.Option(
            help="Root model provider: openai, anthropic, scripted, or a preset "
            "(ollama, vllm, llamacpp, lmstudio, openrouter, together, groq, deepseek). "
            "See `rlm providers`. Default: openai."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Root model name.")] = None,
    sub_provider: Annotated[
        str | None, typer.Option(help="Worker model provider (default: the root's).")
    ] = None,
    sub_model: Annotated[str | None, typer.Option(help="Worker model for llm_query calls.")] = None,
    base_url: Annotated[
        str | None,
        typer.Option(help="API endpoint, e.g. http://localhost:8000/v1 for a local server."),
    ] = None,
    sub_base_url: Annotated[
        str | None, typer.Option(help="API endpoint of the worker provider (default: --base-url).")
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the API key (default: the provider's, e.g. OPENAI_API_KEY)."
        ),
    ] = None,
    sub_api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the worker provider's key.")
    ] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (0-2).")] = None,
    max_output_tokens: Annotated[
        int | None, typer.Option(help="Most tokens one model reply may have.")
    ] = None,
    reasoning_effort: Annotated[
        str | None,
        typer.Option(
            help="low, medium or high: OpenAI reasoning effort, or Anthropic extended thinking."
        ),
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(help="Attempts per model call on 429, 5xx and timeouts. Default: 6."),
    ] = None,
    request_timeout: Annotated[
        float | None, typer.Option(help="Seconds one model request may take. Default: 600.")
    ] = None,
    prices: PricesOption = None,
    script: Annotated[
        str | None, typer.Option(help="Script of replies for --provider scripted (YAML or JSON).")
    ] = None,
    config: ConfigOption = None,
    max_iterations: Annotated[
        int | None, typer.Option(help="Root turns before asking for a best answer. Default: 30.")
    ] = None,
    cell_timeout: Annotated[
        float | None, typer.Option(help="Seconds one code cell may run. Default: 120.")
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            help="Sub-calls in flight at once, per provider (halved on 429s). Default: 32."
        ),
    ] = None,
    max_depth: Annotated[
        int | None,
        typer.Option(
            help="Recursion depth: 1 makes rlm_query a plain llm_query; 2 lets the root start "
            "child RLMs; up to 5. Default: 1."
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(help="Stop at this many US dollars (a tenth kept for the last turn)."),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Stop at this many tokens, input plus output, all models.")
    ] = None,
    max_subcalls: Annotated[
        int | None,
        typer.Option(help="Stop at this many sub-calls; a bigger fan-out fails at once."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Stop after this many seconds of wall clock, child runs included."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the sub-call reply cache.")
    ] = False,
    cache_root: Annotated[
        bool,
        typer.Option("--cache-root", help="Cache root-model replies too (replays whole runs)."),
    ] = False,
    output_limit: Annotated[
        int | None,
        typer.Option(help="Characters of a cell's output shown to the root model. Default: 20000."),
    ] = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    max_file_size: MaxFileSizeOption = None,
    max_memory_share: MaxMemoryShareOption = None,
    sandbox: Annotated[
        str | None,
        typer.Option(
            help="Where cells run: process (an isolated worker: no network, no files but the "
            "inputs, no host processes; see `rlm doctor`) or none (no isolation, trusted code "
            "only). Default: process."
        ),
    ] = None,
    allow_weaker_sandbox: Annotated[
        bool,
        typer.Option(
            "--allow-weaker-sandbox",
            help="Run even where some sandbox layers are unavailable (`rlm doctor` lists them).",
        ),
    ] = False,
    worker_memory: Annotated[
        int | None,
        typer.Option(
            help="MiB of memory the worker may use. Default: sized from the inputs and the machine."
        ),
    ] = None,
    redact_secrets: Annotated[
        bool,
        typer.Option(
            "--redact-secrets",
            help="Mask API keys, private keys and tokens in sub-call prompts before they are sent.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Resolve the inputs, print their one-line summary and stop: no model is called "
            "(and no API key is needed).",
        ),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 7 when any sub-call failed, even if the root answered (setting strict). "
            "Default: off (a warning line, exit 0).",
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
    trace: Annotated[
        str | None, typer.Option(help="Write every step of the run to this JSON Lines file.")
    ] = None,
    trace_full: Annotated[
        bool, typer.Option("--trace-full", help="Keep long sub-call prompts whole in the trace.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object with the answer, status and usage."),
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
    overrides: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "sub_provider": sub_provider,
        "sub_model": sub_model,
        "script": script,
        "base_url": base_url,
        "sub_base_url": sub_base_url,
        "api_key_env": api_key_env,
        "sub_api_key_env": sub_api_key_env,
        "temperature": temperature,
        "max_output_tokens": max_output_tokens,
        "reasoning_effort": reasoning_effort,
        "max_retries": max_retries,
        "request_timeout": request_timeout,
        "prices": prices,
        "max_iterations": max_iterations,
        "cell_timeout": cell_timeout,
        "max_concurrency": max_concurrency,
        "max_depth": max_depth,
        "max_cost": max_cost,
        "max_tokens": max_tokens,
        "max_subcalls": max_subcalls,
        "timeout": timeout,
        "cache": False if no_cache else None,
        "cache_root": cache_root or None,
        "output_limit": output_limit,
        "trace": trace,
        "trace_full": trace_full or None,
        "max_memory_share": max_memory_share,
        "sandbox": sandbox,
        "allow_weaker_sandbox": allow_weaker_sandbox or None,
        "worker_memory_mb": worker_memory,
        "redact_secrets": redact_secrets or None,
        "strict": strict or None,
    }
    try:
        overrides["max_file_size"] = parse_size(max_file_size)
    except UsageError as exc:
        raise typer.Exit(_fail(exc, as_json, trace, debug)) from None
    selection = Selection(tuple(include or ()), tuple(exclude or ()))
    code = _run(
        args,
        overrides,
        config,
        as_json=as_json,
        view="none" if quiet else view.value,
        debug=debug,
        selection=selection,
        dry_run=dry_run,
        assume_yes=yes,
    )
    raise typer.Exit(code)


def _run(
    args: list[str],
    overrides: dict[str, Any],
    config: Path | None,
    *,
    as_json: bool,
    view: str,
    debug: bool,
    selection: Selection | None = None,
    dry_run: bool = False,
    assume_yes: bool = False,
) -> int:
    from rlm_cli.cli.inspect import cost_range, summary_line, warn_unenforceable_cost
    from rlm_cli.cli.inspect import dry_run as dry_run_inputs
    from rlm_cli.ui import open_view

    question, paths = args[-1], args[:-1]
    trace_path = overrides.get("trace")
    finished: list[RunFinished] = []  # the engine's own summary, for --json after an interrupt
    top: list[str] = []  # the id of the top run, once it starts
    first_failure: list[str] = []  # the first failed sub-call's error, for the end-of-run line
    try:
        if dry_run:
            check_question(question)
            return dry_run_inputs(paths, overrides, config, selection or Selection(), piped_stdin())
        rlm, inputs = _prepare(question, paths, overrides, config, selection)
        try:
            # What will be read and what it may cost, before the first model call: ahead of a
            # live tree (which then owns the terminal), else just after the view's `run` line.
            # File names are the user's, but an archive's member names are whoever made it.
            cost = cost_range(inputs.total_tokens, rlm.settings)
            line = terminal_safe(summary_line(inputs, rlm.settings, cost))
            summary = None if view == "none" else f"rlm: {line}"
            live = view == "tree" or (view == "auto" and sys.stderr.isatty())
            if summary and live:
                print(summary, file=sys.stderr)
            # Limits said out loud, before anything is spent.
            warn_unenforceable_cost(rlm.settings)
            try:
                _confirm_cost(cost.high, rlm.settings.confirm_above_usd, assume_yes, summary)
            except NotConfirmed as exc:
                _trace_failure(trace_path, question, rlm.settings.public(), inputs, exc)
                raise
            except KeyboardInterrupt:  # Ctrl-C at the question: exit 130, and a trace says so
                stopped = Interrupted("interrupted before the run started")
                _trace_failure(trace_path, question, rlm.settings.public(), inputs, stopped)
                raise
            watcher = open_view(view, sys.stderr)

            def on_event(event: Event) -> None:
                watcher(event)
                if isinstance(event, RunStarted) and event.depth == 0:
                    top.append(event.run_id)
                    if summary and not live:
                        print(summary, file=sys.stderr, flush=True)
                # The top run's summary, not a child's (cancelled children report after it).
                if isinstance(event, RunFinished) and event.run_id in top:
                    finished.append(event)
                if isinstance(event, SubcallFinished) and event.error and not first_failure:
                    first_failure.append(event.error)

            try:
                result = asyncio.run(
                    _until_terminated(
                        rlm.run(
                            inputs,
                            question,
                            on_event=on_event,
                            keep_events=False,
                            on_subscriber_error=lambda _, error: _view_failed(error, debug),
                        )
                    )
                )
            finally:
                watcher.close()  # the live view must be done drawing before anything else prints
        finally:
            inputs.cleanup()
    except RlmError as exc:
        return _fail(exc, as_json, trace_path, debug)
    except (KeyboardInterrupt, asyncio.CancelledError):
        data = result_json(finished[-1].to_json(), trace_path) if finished else None
        return _fail(Interrupted("interrupted"), as_json, trace_path, debug, data)
    except Exception as exc:
        error = InternalError(
            f"unexpected error: {type(exc).__name__}: {exc} (--debug shows where)"
        )
        error.__cause__ = exc
        return _fail(error, as_json, trace_path, debug)
    if result.error is not None:
        return _fail(
            result.error, as_json, trace_path, debug, result_json(result.__dict__, trace_path)
        )
    if as_json:
        _print_json(result_json(result.__dict__, trace_path))
    elif result.answer is not None:
        _print_answer(result.answer)
    code = result.exit_code
    if result.status != "ok":
        limit = result.status.replace("_", " ")
        # Say what is on stdout: an answer given at the limit, or none at all.
        outcome = "the answer is a best effort" if result.answer is not None else "no answer"
        print(f"rlm: stopped: {limit} reached; {outcome}", file=sys.stderr)
    first = first_failure[0] if first_failure else None
    failed = _failed_subcalls(result, bool(rlm.settings.strict), first)
    if failed is not None:
        severity, message = failed
        print(f"rlm: {severity}: {message}", file=sys.stderr)
        if severity == "error" and code == 0:
            code = SubcallsFailed.exit_code
    return code


def _failed_subcalls(
    result: RunResult, strict: bool, first: str | None = None
) -> tuple[str, str] | None:
    """("warning" or "error", the line to print) when sub-calls failed, else None.

    The root may answer around failed sub-calls (the code gets an error string so it can adapt),
    so by default that is a warning and exit 0; but the answer then rests on less than the code
    asked for, so it is always said, and --strict (for CI) makes it exit 7. A run stopped by a
    limit keeps its exit 6; the count is still said. `first` is the first failure's error,
    which names the model and the cause (under --quiet nothing else does).
    """
    failed = result.subcalls_failed
    if failed <= 0:
        return None
    kinds = ", ".join(
        f"{kind} {count}" for kind, count in sorted(result.failures.items(), key=lambda kv: -kv[1])
    )
    every = failed >= result.subcalls
    if every:
        counted = "its only sub-call failed" if failed == 1 else f"all {failed} sub-calls failed"
    else:
        counted = f"{failed} of {result.subcalls} sub-calls failed"
    counted += f" ({kinds})" if kinds else ""
    if every and result.status == "ok":
        counted += "; the answer rests on none of them"
    if first:
        shown = first if len(first) <= 300 else first[:299] + "…"
        counted += f"; the first: {terminal_safe(' '.join(shown.split()))}"
    if result.status != "ok":
        return "warning", counted
    if strict:
        return "error", f"answered, but {counted} (--strict)"
    return "warning", f"answered, but {counted}; --strict makes this exit 7"


def check_question(question: str) -> None:
    """The last argument is the question. A forgotten one leaves a path there (`rlm ask log
    src/`), which would be asked as the question, with the other paths as the inputs (or
    piped stdin, empty, as the only input): a run that answers nonsense, or a wrong error."""
    if not question.strip():
        raise UsageError("the question is empty; give it as the last argument")
    # os.path.exists is False for names too long or holding NUL: those are questions.
    if os.path.exists(question):
        kind = (
            "a directory"
            if os.path.isdir(question)
            else "a file"
            if os.path.isfile(question)
            else "an existing path"
        )
        raise UsageError(
            f"the last argument must be the question; `{question}` is {kind} — did you forget "
            'the question? (rlm ask INPUTS... "QUESTION")'
        )


def _prepare(
    question: str,
    paths: list[str],
    overrides: dict[str, Any],
    config: Path | None,
    selection: Selection | None = None,
) -> tuple[RLM, Inputs]:
    """Everything that can fail before the run starts, in the order a user fixes it: the
    question, the settings, the inputs, and last the providers, because making them looks up
    API keys: a missing file or a forgotten question is reported as itself, not as a missing
    key (and `--dry-run`, which needs no key, agrees with a real run)."""
    from rlm_cli.api import RLM
    from rlm_cli.cli.inspect import input_options
    from rlm_cli.config import load_settings, public_values
    from rlm_cli.inputs import resolve

    settings = None
    inputs = None
    try:
        check_question(question)
        settings = load_settings(overrides, config)
        inputs = resolve(paths, piped_stdin(), input_options(settings, selection or Selection()))
        return RLM.from_settings(settings), inputs
    except RlmError as exc:
        # Without settings, the flags as given, less anything that looks like a key.
        public = settings.public() if settings else public_values(overrides)
        _trace_failure(overrides.get("trace"), question, public, inputs, exc)
        if inputs is not None:
            inputs.cleanup()
        raise


def _trace_failure(
    trace_path: str | None,
    question: str,
    settings: dict[str, Any],
    inputs: Inputs | None,
    error: RlmError,
) -> None:
    """Every run leaves a trace when asked for one, even a run that never started."""
    if not trace_path:
        return
    with contextlib.suppress(RlmError):  # an unwritable trace must not hide `error`
        writer = TraceWriter(trace_path)
        writer.header(question, settings, inputs.summary() if inputs else None)
        writer.failed_before_start(str(error), error.status)
        writer.close()


def _confirm_cost(high: float | None, limit: float, assume_yes: bool, summary: str | None) -> None:
    """On a terminal, ask before a run that may cost more than `confirm_above_usd`. Elsewhere
    (CI, a pipe, piped stdin) never wait for an answer: go on, the estimate said out loud."""
    from rlm_cli.cli.inspect import usd

    if high is None or high <= limit or assume_yes:
        return
    estimate = f"this run may cost up to {usd(high)} (confirm_above_usd is {usd(limit)})"
    if not (sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()):
        if summary is None:  # --quiet: the summary line with the estimate was not shown
            print(f"rlm: note: {estimate}; not asking: not a terminal", file=sys.stderr)
        return
    sys.stderr.write(f"rlm: {estimate}. Continue? [y/N] ")
    sys.stderr.flush()
    reply = sys.stdin.readline()  # "" at end of input (Ctrl-D): no
    if reply.strip().lower() not in ("y", "yes"):
        raise NotConfirmed(
            f"not confirmed: {estimate}; nothing was spent; --yes skips the question"
        )


async def _until_terminated(run: Coroutine[Any, Any, RunResult]) -> RunResult:
    """Run to the end, treating SIGTERM (CI runners, `timeout`) and SIGHUP (a closed terminal
    or ssh session) like Ctrl-C: the run is cancelled, and still ends with a summary in its
    trace, and its worker with it."""
    task = asyncio.ensure_future(run)
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
        for signum in (signal.SIGTERM, signal.SIGHUP):
            asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    return await task


def result_json(fields: dict[str, Any], trace_path: str | None) -> dict[str, Any]:
    """The one `--json` object (its keys are a stable contract)."""
    error = fields.get("error")
    return {
        "answer": fields.get("answer"),
        "status": fields.get("status", "error"),
        "iterations": fields.get("iterations", 0),
        "subcalls": fields.get("subcalls", 0),
        "usage": fields.get("usage") or {"input_tokens": 0, "output_tokens": 0, "by_model": {}},
        "elapsed_s": fields.get("elapsed_s", 0.0),
        "trace": trace_path,
        "error": None if error is None else str(error),
        "redacted": fields.get("redacted", 0),
        # Sub-calls that got an error string instead of a reply, in total and by kind.
        "subcalls_failed": fields.get("subcalls_failed", 0),
        "failures": fields.get("failures") or {},
    }


def _fail(
    error: RlmError,
    as_json: bool,
    trace_path: str | None,
    debug: bool,
    data: dict[str, Any] | None = None,
) -> int:
    if debug:
        cause = error.__cause__ or error
        if cause.__traceback__ is not None:
            traceback.print_exception(cause)
    print(f"rlm: error: {terminal_safe(str(error))}", file=sys.stderr)
    if as_json:
        _print_json(data or result_json({"status": error.status, "error": error}, trace_path))
    return error.exit_code


def _view_failed(error: BaseException, debug: bool) -> None:
    """The progress view raised: it is turned off, and the run (and its trace) go on."""
    if debug:
        traceback.print_exception(error)
    print(
        f"rlm: warning: the progress view failed ({type(error).__name__}: "
        f"{terminal_safe(str(error))}) and was turned off; the run goes on",
        file=sys.stderr,
    )


def _print_json(data: dict[str, Any]) -> None:
    sys.stdout.write(json_safe(json.dumps(data, ensure_ascii=False)) + "\n")
    sys.stdout.flush()


def _print_answer(answer: str) -> None:
    """The answer on stdout. Into a pipe or file it is written exactly (scripts rely on it); on a
    terminal it is made safe first, because the model wrote it after reading hostile inputs."""
    if sys.stdout.isatty():
        answer = terminal_safe(answer)
    sys.stdout.write(answer if answer.endswith("\n") else answer + "\n")
    sys.stdout.flush()

"""What `rlm ask` does once its flags are parsed (cli/ask.py): load the settings, prepare the
run, confirm its cost, run it under a view, and print the answer or the one-line error."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import traceback
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_cli.cli.common import (
    parse_size,
    piped_stdin,
    say_error,
    warn,
)
from rlm_cli.engine.result import RunResult
from rlm_cli.errors import (
    InternalError,
    Interrupted,
    NotConfirmed,
    RlmError,
    UsageError,
)
from rlm_cli.events import AnyEvent, RunFinished, RunStarted, SubcallFinished
from rlm_cli.format import format_usd
from rlm_cli.ui.safe import json_safe, terminal_safe

if TYPE_CHECKING:
    from rlm_cli.config import Settings


@dataclass(frozen=True)
class Flags:
    """The flags of `rlm ask` that are not settings: how to show the run, and the file size as
    given (parsed when the settings are loaded)."""

    as_json: bool = False
    view: str = "auto"
    debug: bool = False
    dry_run: bool = False
    assume_yes: bool = False
    max_file_size: str | None = None


@dataclass
class Watch:
    """What the CLI keeps from the event stream: the top run's summary (for --json after an
    interrupt) and the first failed sub-call's error (for the end-of-run line)."""

    top: str | None = None
    finished: RunFinished | None = None
    first_failure: str | None = None

    def __call__(self, event: AnyEvent) -> None:
        if isinstance(event, RunStarted) and event.depth == 0:
            self.top = event.run_id
        # The top run's summary, not a child's (cancelled children report after it).
        if isinstance(event, RunFinished) and event.run_id == self.top:
            self.finished = event
        if isinstance(event, SubcallFinished) and event.error and self.first_failure is None:
            self.first_failure = event.error


def raw_main(args: list[str], overrides: dict[str, Any], config: Path | None, flags: Flags) -> int:
    """`rlm ask` with its one error policy: every failure is one line on stderr (and the --json
    object, when asked for) and its exit code; a traceback only with --debug."""
    trace_path = overrides.get("trace")
    watch = Watch()
    try:
        return program(args, overrides, config, flags, watch)
    except RlmError as exc:
        return _fail(exc, flags, trace_path)
    except (KeyboardInterrupt, asyncio.CancelledError):
        data = RunResult(watch.finished, trace=trace_path).to_json() if watch.finished else None
        return _fail(Interrupted("interrupted"), flags, trace_path, data)
    except Exception as exc:
        error = InternalError(
            f"unexpected error: {type(exc).__name__}: {exc} (--debug shows where)"
        )
        error.__cause__ = exc
        return _fail(error, flags, trace_path)


def program(
    args: list[str], overrides: dict[str, Any], config: Path | None, flags: Flags, watch: Watch
) -> int:
    """`rlm ask` without error handling: settings, inputs, providers, the run, the answer."""
    from rlm_cli.api import RLM, prepare, record_failure, tokens_needed
    from rlm_cli.config import load_settings, public_values
    from rlm_cli.engine.estimate import unenforceable_cost
    from rlm_cli.ui import open_view

    question, paths = args[-1], args[:-1]
    # A dry run is not a run: it leaves no trace, failed or not, even where a config sets one.
    trace = None if flags.dry_run else overrides.get("trace")
    try:
        check_question(question)
        overrides["max_file_size"] = parse_size(flags.max_file_size)
        settings = load_settings(overrides, config)
    except RlmError as exc:
        # Without settings, the flags as given, less anything that looks like a key.
        record_failure(trace, question, public_values(overrides), None, exc)
        raise
    if flags.dry_run:
        settings = dataclasses.replace(settings, trace=None)
    run = prepare(
        question,
        paths,
        piped_stdin(),
        settings,
        warn=warn,
        count_tokens=tokens_needed(settings, dry_run=flags.dry_run),
    )
    try:
        cost_warning = unenforceable_cost(settings)  # a limit that cannot hold, said out loud
        if flags.dry_run:
            print(f"rlm: {terminal_safe(run.summary)}", file=sys.stderr)
            if cost_warning:
                warn(cost_warning)
            print("rlm: dry run: no model was called", file=sys.stderr)
            if flags.as_json:
                _print_json(
                    {
                        "dry_run": True,
                        "question": question,
                        "root_model": settings.root_model,
                        "worker_model": settings.worker_model,
                        "inputs": run.inputs.summary(),
                        "estimate": run.estimate.to_json(),
                        "summary": run.summary,
                    }
                )
            return 0
        try:
            rlm = RLM.from_settings(settings)  # looks up API keys: after the inputs are checked
            if cost_warning:
                warn(cost_warning)
            confirm_cost(run.estimate.high, settings, flags)
        except RlmError as exc:
            record_failure(settings.trace, question, settings.public(), run.inputs, exc)
            raise
        except KeyboardInterrupt:  # Ctrl-C at the question: exit 130, and a trace says so
            stopped = Interrupted("interrupted before the run started")
            record_failure(settings.trace, question, settings.public(), run.inputs, stopped)
            raise
        view = open_view(flags.view, sys.stderr)

        def on_event(event: AnyEvent) -> None:
            view(event)
            watch(event)

        try:
            result = asyncio.run(
                _until_terminated(
                    rlm.run(
                        run,
                        question,
                        on_event=on_event,
                        keep_events=False,
                        on_subscriber_error=lambda _, error: _view_failed(error, flags.debug),
                    )
                )
            )
        finally:
            view.close()  # the live view must be done drawing before anything else prints
    finally:
        run.cleanup()
    if result.error is not None:
        return _fail(result.error, flags, settings.trace, result.to_json())
    if flags.as_json:
        _print_json(result.to_json())
    elif result.answer is not None:
        _print_answer(result.answer)
    if result.status != "ok":
        limit = result.status.replace("_", " ")
        # Say what is on stdout: an answer given at the limit, or none at all.
        outcome = "the answer is a best effort" if result.answer is not None else "no answer"
        print(f"rlm: stopped: {limit} reached; {outcome}", file=sys.stderr)
    note = result.subcall_note(watch.first_failure)
    if note is not None:
        severity, message = note
        print(f"rlm: {severity}: {terminal_safe(message)}", file=sys.stderr)
    return result.exit_code


def check_question(question: str) -> None:
    """The last argument is the question. A forgotten one leaves a path there (`rlm ask log
    src/`), which would be asked as the question, with the other paths as the inputs (or
    piped stdin, empty, as the only input): a run that answers nonsense, or a wrong error."""
    from rlm_cli.api import require_question

    require_question(question)
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


def confirm_cost(high: float | None, settings: Settings, flags: Flags) -> None:
    """On a terminal, ask before a run that may cost more than `confirm_above_usd`. Elsewhere
    (CI, a pipe, piped stdin) never wait for an answer: go on, the estimate said out loud."""
    limit = settings.confirm_above_usd
    if high is None or high <= limit or flags.assume_yes:
        return
    estimate = (
        f"this run may cost up to {format_usd(high)} (confirm_above_usd is {format_usd(limit)})"
    )
    if not (sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()):
        if flags.view == "none":  # --quiet: the summary line with the estimate is not shown
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


def _fail(
    error: RlmError, flags: Flags, trace_path: str | None, data: dict[str, Any] | None = None
) -> int:
    if flags.debug:
        cause = error.__cause__ or error
        if cause.__traceback__ is not None:
            traceback.print_exception(cause)
    say_error(error)
    if flags.as_json:
        _print_json(data or RunResult.before_start(error, trace_path).to_json())
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
    _to_stdout(json_safe(json.dumps(data, ensure_ascii=False)) + "\n")


def _print_answer(answer: str) -> None:
    """The answer on stdout. Into a pipe or file it is written exactly (scripts rely on it); on a
    terminal it is made safe first, because the model wrote it after reading hostile inputs."""
    if sys.stdout.isatty():
        answer = terminal_safe(answer)
    _to_stdout(answer if answer.endswith("\n") else answer + "\n")


def _to_stdout(text: str) -> None:
    """Write `text` to stdout. A reader that stopped reading (`rlm ask ... | head -1`) took what
    it wanted: the rest goes nowhere, and the status stays the run's."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout from here on, never closed

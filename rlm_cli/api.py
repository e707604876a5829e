"""The library API: `RLM(...).completion(context, question)`. The CLI is a thin layer over it.

A run goes in two steps, both here, so every caller (the CLI, a server, batch runs) gets the
same guarantees: `prepare` resolves the inputs and estimates the cost; `run` starts the engine.
A run that ends any way, even one that fails in `prepare`, leaves a trace when one is asked for:
its header and a `run_finished` summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from rlm_cli.config import Settings, load_settings
from rlm_cli.engine.cache import ReplyCache
from rlm_cli.engine.estimate import CostRange, cost_range
from rlm_cli.engine.result import RunResult
from rlm_cli.engine.run import Run, Tree
from rlm_cli.errors import RlmError, UsageError
from rlm_cli.events import AnyEvent, EventBus, EventHandler, SubscriberErrorHandler
from rlm_cli.inputs import InputOptions, Inputs, from_value
from rlm_cli.inputs.report import one_line
from rlm_cli.inputs.resolve import resolve
from rlm_cli.providers import Provider, make_providers
from rlm_cli.trace.writer import TraceWriter

# A file or directory given to the library as a path, or several.
PathInput = os.PathLike[str] | Sequence[os.PathLike[str]]


@dataclass
class PreparedRun:
    """A run's inputs, resolved, and what it may cost: all that `prepare` checks before any
    provider is made or any model is called."""

    question: str
    inputs: Inputs
    estimate: CostRange
    # The line the views print before the first model call: what is read and what it may cost.
    summary: str

    def cleanup(self) -> None:
        self.inputs.cleanup()


def prepare(
    question: str,
    paths: list[str],
    stdin: BinaryIO | None,
    settings: Settings,
    *,
    warn: Callable[[str], None] | None = None,
    count_tokens: bool = True,
) -> PreparedRun:
    """Resolve `paths` (or `stdin`) for a run of `question` with `settings`, and estimate its
    cost. Makes no provider, so needs no API key. When this fails, the trace (if the settings
    ask for one) gets its header and a failed summary before the error is raised."""
    inputs = None
    try:
        require_question(question)
        inputs = resolve_inputs(paths, stdin, settings, warn=warn, count_tokens=count_tokens)
        return prepared(question, inputs, settings)
    except RlmError as error:
        record_failure(settings.trace, question, settings.public(), inputs, error)
        if inputs is not None:
            inputs.cleanup()
        raise


def require_question(question: str) -> None:
    """A run needs a question: a blank one is a usage error, said before anything is read."""
    if not question.strip():
        raise UsageError("the question is empty; give it as the last argument")


def resolve_inputs(
    paths: list[str],
    stdin: BinaryIO | None,
    settings: Settings,
    *,
    warn: Callable[[str], None] | None = None,
    count_tokens: bool = True,
) -> Inputs:
    """`paths` (or `stdin`) as a run with `settings` would load them, and nothing more: no
    trace, no estimate (`rlm inspect` shows what a run would read without being one).

    `count_tokens=False` leaves the tokens at characters / 4 (`tokens_method` "approximate"):
    loading the tokenizer takes about 0.4 s, which a run that is about to send its first
    request should not wait for when nothing needs the exact figure (`tokens_needed`)."""
    options = InputOptions(
        include=settings.include,
        exclude=settings.exclude,
        max_file_bytes=settings.max_file_size,
        max_memory_share=settings.max_memory_share,
        warn=warn,
        count_tokens=count_tokens,
    )
    return resolve(paths, stdin, options)


def tokens_needed(settings: Settings, *, dry_run: bool = False) -> bool:
    """Whether a run must count its input's tokens before it starts: to show the estimate of a
    dry run, or to choose the direct path by --direct-below, where characters / 4 could put an
    input on the wrong side of the line. Anything else needs only a figure for the root's
    first message ("about N tokens"), which characters / 4 gives."""
    return dry_run or settings.direct_below is not None


def prepared(question: str, inputs: Inputs, settings: Settings) -> PreparedRun:
    """A run over inputs already resolved (or made from a value)."""
    estimate = cost_range(inputs.total_tokens, settings)
    return PreparedRun(question, inputs, estimate, one_line(inputs, estimate.describe()))


def record_failure(
    trace_path: str | None,
    question: str,
    settings: dict[str, Any],
    inputs: Inputs | None,
    error: RlmError,
) -> None:
    """Every run leaves a trace when asked for one, even a run that never started: the header
    (`settings` as recorded: public values only) and a `run_finished` with the error."""
    if not trace_path:
        return
    with contextlib.suppress(RlmError):  # an unwritable trace must not hide `error`
        writer = TraceWriter(trace_path)
        writer.header(question, settings, inputs.summary() if inputs else None)
        writer(RunResult.before_start(error).summary)
        writer.close()


class RLM:
    """A configured Recursive Language Model.

    >>> RLM(provider="scripted", script="samples/find_code.yaml").completion(text, "what is the code?")

    Keyword arguments are settings (see `rlm_cli.config.Settings`); `config` names a config file.
    Providers may be given as objects (`root_provider=`, `worker_provider=`) instead of by name.
    """

    def __init__(
        self,
        *,
        config: str | Path | None = None,
        root_provider: Provider | None = None,
        worker_provider: Provider | None = None,
        **settings: Any,
    ) -> None:
        if root_provider is not None and "provider" not in settings:
            settings["provider"] = root_provider.name
        loaded = load_settings(settings, Path(config) if config else None, source="argument")
        self._setup(loaded, root_provider, worker_provider)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        root_provider: Provider | None = None,
        worker_provider: Provider | None = None,
    ) -> RLM:
        """An RLM for settings already loaded and validated. The CLI loads them first, checks
        the inputs with them, and only then makes the providers (which look up API keys), so a
        missing file is reported as a missing file even when no key is set."""
        rlm = cls.__new__(cls)
        rlm._setup(settings, root_provider, worker_provider)
        return rlm

    def _setup(
        self, settings: Settings, root_provider: Provider | None, worker_provider: Provider | None
    ) -> None:
        self.settings: Settings = settings
        if root_provider is None:
            root_provider, made_worker = make_providers(settings)
            worker_provider = worker_provider or made_worker
        self._root = root_provider
        self._worker = worker_provider or root_provider
        self._active = 0  # runs in progress: connections are closed when the last one ends

    def completion(
        self, context: Any, question: str, on_event: EventHandler | None = None
    ) -> RunResult:
        """Answer `question` about `context`: a str, list or dict (the value itself), a path or
        a list of paths (files, directories, archives, read as `rlm ask` reads them), or a
        `PreparedRun`.

        Returns the result for runs that ended with an answer or at a limit; raises the
        run's RlmError when it failed. `result.events` holds every event of the run.
        """
        return asyncio.run(self.acompletion(context, question, on_event))

    async def acompletion(
        self, context: Any, question: str, on_event: EventHandler | None = None
    ) -> RunResult:
        result = await self.run(context, question, on_event)
        if result.error is not None:
            raise result.error
        return result

    def prepare(
        self, paths: PathInput | list[str], question: str, stdin: BinaryIO | None = None
    ) -> PreparedRun:
        """`prepare` with this RLM's settings: inputs resolved, cost estimated, nothing sent."""
        if isinstance(paths, os.PathLike):
            paths = [paths]
        return prepare(question, [os.fspath(path) for path in paths], stdin, self.settings)

    async def run(
        self,
        context: Any,
        question: str,
        on_event: EventHandler | None = None,
        *,
        keep_events: bool = True,
        on_subscriber_error: SubscriberErrorHandler | None = None,
    ) -> RunResult:
        """Like `acompletion`, but a failed run is returned (status "error"), not raised.
        `keep_events=False` leaves `result.events` empty, so memory stays flat however long
        the run (the CLI streams events to its views and the trace instead). A subscriber that
        raises is dropped and reported to `on_subscriber_error` (default: a line on stderr)."""
        try:
            run = self._prepared(context, question)
        except RlmError as error:
            return RunResult.before_start(error, self.settings.trace)
        events: list[AnyEvent] = []
        bus = EventBus(on_error=on_subscriber_error)
        trace = None
        cache = None
        self._active += 1
        try:
            if self.settings.trace:  # first, so it has every event whatever the others do
                trace = TraceWriter(self.settings.trace, full=self.settings.trace_full)
                trace.header(question, self.settings.public(), run.inputs.summary())
                bus.subscribe(trace)
            if keep_events:
                bus.subscribe(events.append)
            if on_event is not None:
                bus.subscribe(on_event)
            cache = self._cache()
            tree = Tree(self.settings, self._root, self._worker, bus, cache)
            result = await Run(
                question,
                run.inputs,
                tree,
                estimate=run.estimate.to_json(),
                summary=run.summary,
            ).execute()
        finally:
            if cache is not None:
                cache.close()
            self._active -= 1
            if self._active == 0:  # runs sharing this object must keep their connections
                for provider in {
                    id(self._root): self._root,
                    id(self._worker): self._worker,
                }.values():
                    await provider.aclose()
            if trace is not None:
                trace.close()
            if context is not run and context is not run.inputs:  # made here, so removed here
                run.cleanup()
        result.events = events
        return result

    def _prepared(self, context: Any, question: str) -> PreparedRun:
        """Any context a caller may give, as a prepared run (a failure is traced)."""
        if isinstance(context, PreparedRun):
            return context
        if isinstance(context, os.PathLike) or (
            isinstance(context, list | tuple)
            and context
            and all(isinstance(item, os.PathLike) for item in context)
        ):
            return self.prepare(context, question)
        inputs = None
        try:
            inputs = context if isinstance(context, Inputs) else from_value(context)
            return prepared(question, inputs, self.settings)
        except RlmError as error:
            record_failure(self.settings.trace, question, self.settings.public(), inputs, error)
            raise

    def _cache(self) -> ReplyCache | None:
        """The reply cache, unless turned off (`cache: false`, `--no-cache`) or of no use: no
        provider of the run may have its replies replayed (the scripted one, say)."""
        root = self.settings.cache_root and self._root.cacheable
        if not self.settings.cache or not (self._worker.cacheable or root):
            return None
        return ReplyCache()

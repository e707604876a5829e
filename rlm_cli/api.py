"""The library API: `RLM(...).completion(context, question)`. The CLI is a thin layer over it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rlm_cli.config import Settings, load_settings
from rlm_cli.engine.cache import ReplyCache
from rlm_cli.engine.run import Run, RunResult, Tree
from rlm_cli.events import Event, EventBus, EventHandler, SubscriberErrorHandler
from rlm_cli.inputs import Inputs, from_value
from rlm_cli.providers import Provider, make_providers
from rlm_cli.trace.writer import TraceWriter


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
        loaded = load_settings(settings, Path(config) if config else None)
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
        """Answer `question` about `context` (a str, list, dict, or `Inputs`).

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
        events: list[Event] = []
        bus = EventBus(on_error=on_subscriber_error)
        inputs = context if isinstance(context, Inputs) else from_value(context)
        trace = None
        cache = None
        self._active += 1
        try:
            if self.settings.trace:  # first, so it has every event whatever the others do
                trace = TraceWriter(self.settings.trace, full=self.settings.trace_full)
                trace.header(question, self.settings.public(), inputs.summary())
                bus.subscribe(trace)
            if keep_events:
                bus.subscribe(events.append)
            if on_event is not None:
                bus.subscribe(on_event)
            cache = self._cache()
            tree = Tree(self.settings, self._root, self._worker, bus, cache)
            result = await Run(question, inputs, tree).execute()
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
            if inputs is not context:
                inputs.cleanup()
        result.events = events
        return result

    def _cache(self) -> ReplyCache | None:
        """The sub-call reply cache, unless turned off (`cache: false`, `--no-cache`)."""
        # Scripted replies are free, instant, and change with their script: never cached.
        if not self.settings.cache or self._worker.name == "scripted":
            return None
        return ReplyCache()

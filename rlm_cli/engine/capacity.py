"""One true capacity per worker model: the window the root is told and the guard refuses past.

Settled once, before the run, in the run tree's shared Catalog, which the prompt's figure
(RunFacts.subcall_chars) and the sub-call guard (SubcallRouter._refusal) both read through
`facts(model).prompt_chars`. In order:

1. the window the model's server enforces, when the worker is on a server of the user's and
   it says (vLLM's max_model_len, llama.cpp's n_ctx, Ollama's num_ctx): it is what a request
   will meet, whatever the catalog thinks;
2. else the catalog's, for a model it knows;
3. else the sub_window setting (--sub-window);
4. else DEFAULT_WINDOW.

A model's trained length (llama.cpp's n_ctx_train, Ollama's context_length) is only a ceiling
on 2-4: a server may serve less than the model could take, never more.
"""

from __future__ import annotations

from rlm_cli.config import Settings
from rlm_cli.providers.base import Provider, ServedWindow, WindowReporter
from rlm_cli.providers.catalog import DEFAULT_WINDOW, Catalog


async def learn(catalog: Catalog, worker: Provider, settings: Settings) -> None:
    """Settle the worker model's window in `catalog` before the run starts. Never raises: a
    server that says nothing, or cannot be reached, leaves the other figures."""
    model = settings.worker_model
    said = await ask_server(worker, model)
    facts = catalog.facts(model)
    if said is not None and said.tokens is not None:
        catalog.learn(model, said.tokens, "server", said.said_by)
        return
    window, source, detail = facts.window, facts.source, facts.source_detail
    if not facts.known and settings.sub_window is not None:
        window, source, detail = settings.sub_window, "sub_window", settings.source("sub_window")
    elif not facts.known:
        window, source, detail = DEFAULT_WINDOW, "default", ""
    if said is not None and said.ceiling is not None and said.ceiling < window:
        window, source, detail = said.ceiling, "server", said.said_by
    if (window, source) != (facts.window, facts.source) or detail != facts.source_detail:
        catalog.learn(model, window, source, detail)


async def ask_server(worker: Provider, model: str) -> ServedWindow | None:
    """What the worker's server says about `model`'s window, or None (a hosted API, a scripted
    worker, a server that says nothing or is down)."""
    reporter = _reporter(worker)
    if reporter is None:
        return None
    try:
        return await reporter.served_window(model)
    except Exception:  # a report is a nicety: never a reason for the run to fail
        return None


def _reporter(provider: object) -> WindowReporter | None:
    """The provider, or the one it wraps (the reply cache keeps it as `inner`), that can ask
    its server."""
    seen = 0
    while provider is not None and seen < 8:
        if isinstance(provider, WindowReporter):
            return provider
        provider, seen = getattr(provider, "inner", None), seen + 1
    return None

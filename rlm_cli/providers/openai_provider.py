"""OpenAI Chat Completions, and every OpenAI-compatible server (Ollama, vLLM, llama.cpp, ...),
which a user's server may also be asked what window it serves a model with."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from rlm_cli.errors import RetryableError
from rlm_cli.providers.base import Completion, ModelRequest, ServedWindow, TextCallback, Usage
from rlm_cli.providers.errors import stream_error
from rlm_cli.providers.http import LeanHTTP, json_object
from rlm_cli.providers.wire import WireProvider

# How long the server is given to say what window it serves, all its endpoints asked at once:
# a run waits this long at most before its first request when a server says nothing.
PROBE_TIMEOUT_S = 2.0


class OpenAIProvider(WireProvider):
    default_base_url = "https://api.openai.com/v1"
    base_url_env = "OPENAI_BASE_URL"

    def _auth_headers(self) -> dict[str, str]:
        # As the SDK: the key as a bearer token ("not-needed" for a local server without one),
        # and the organization and project it reads from the environment.
        headers = {"Authorization": f"Bearer {self._conn.api_key or 'not-needed'}"}
        for header, variable in (
            ("OpenAI-Organization", "OPENAI_ORG_ID"),
            ("OpenAI-Project", "OPENAI_PROJECT_ID"),
        ):
            value = os.environ.get(variable)
            if value:
                headers[header] = value
        return headers

    async def served_window(self, model: str) -> ServedWindow | None:
        """Ask a server of the user's (never a hosted API: Connection.users_server) what window
        it serves `model` with: vLLM, llama.cpp and Ollama each say it on their own endpoint,
        all asked at once (the others 404). None when none says, in PROBE_TIMEOUT_S at most."""
        if not self._conn.users_server:
            return None
        return served(await _ask(self._http(), model), model)

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        conn = self._conn
        facts = conn.facts(request.model)
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        max_tokens = request.max_output_tokens or conn.max_output_tokens
        if max_tokens:
            # OpenAI itself wants max_completion_tokens (max_tokens is refused for reasoning
            # models); compatible servers (llama.cpp, vLLM, Ollama...) read max_tokens and
            # silently ignore the other, so the name follows the URL, not --provider.
            key = "max_completion_tokens" if conn.official_openai else "max_tokens"
            params[key] = max_tokens
        if conn.temperature is not None and not facts.reasoning:
            params["temperature"] = conn.temperature
        if conn.reasoning_effort and facts.reasoning:
            params["reasoning_effort"] = conn.reasoning_effort
        return params

    async def complete(self, request: ModelRequest) -> Completion:
        params = self._params(request)

        async def attempt(http: LeanHTTP) -> Completion:
            data = await http.post_json("/chat/completions", params, request.model)
            try:
                choice = data["choices"][0]
                text = choice["message"].get("content") or ""
                usage = _usage(data.get("usage"))
            except (KeyError, IndexError, TypeError, AttributeError):
                raise RetryableError(
                    f"{self._what(request)}: malformed reply: no choices"
                ) from None
            return self._completion(
                request, text, usage, choice.get("finish_reason"), data.get("id")
            )

        return await self._retrying(request, attempt)

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        params = {
            **self._params(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        what = self._what(request)

        async def attempt(http: LeanHTTP) -> Completion:
            parts: list[str] = []
            usage: Usage | None = None
            finish: str | None = None
            request_id: str | None = None

            def on_event(name: str | None, data: str) -> bool:
                nonlocal usage, finish, request_id
                if data.startswith("[DONE]"):
                    return True
                chunk = json_object(data, what, self._conn)
                if chunk.get("error"):
                    raise stream_error(self._conn, request.model, chunk)
                try:
                    request_id = request_id or chunk.get("id")
                    usage = _usage(chunk.get("usage")) or usage
                    for choice in chunk.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            parts.append(content)
                            on_text(content)
                        finish = choice.get("finish_reason") or finish
                except (TypeError, AttributeError):
                    raise RetryableError(f"{what}: malformed stream event") from None
                return False

            await http.post_stream("/chat/completions", params, request.model, on_event)
            self._check_stream_ended(request, finish)
            return self._completion(request, "".join(parts), usage, finish, request_id)

        return await self._retrying(request, attempt)


def _usage(raw: dict[str, Any] | None) -> Usage | None:
    """OpenAI's usage block; None when the server sent none (then it is estimated offline)."""
    if not raw:
        return None
    details = raw.get("prompt_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_input_tokens=details.get("cached_tokens") or 0,
    )


async def _ask(lean: LeanHTTP, model: str) -> dict[str, Any]:
    """The JSON replies of the endpoints where servers say what they serve, by name; an endpoint
    that failed, or had not answered in PROBE_TIMEOUT_S, is missing."""
    root = lean.server_root
    asks = {
        "models": ("GET", lean.base + "/models", None),  # vLLM, and llama.cpp's meta
        "props": ("GET", root + "/props", None),  # llama.cpp
        "show": ("POST", root + "/api/show", {"model": model}),  # Ollama
        "ps": ("GET", root + "/api/ps", None),  # Ollama: the models loaded now
    }
    tasks = {
        name: asyncio.create_task(lean.probe(method, url, body, PROBE_TIMEOUT_S))
        for name, (method, url, body) in asks.items()
    }
    done, pending = await asyncio.wait(tasks.values(), timeout=PROBE_TIMEOUT_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {
        name: task.result()
        for name, task in tasks.items()
        if task in done and task.exception() is None and task.result() is not None
    }


def served(replies: dict[str, Any], model: str) -> ServedWindow | None:
    """The window `replies` (from `_ask`) say `model` is served with. A figure the server
    enforces wins; a model's trained length is only a ceiling (see ServedWindow)."""
    show = _dict(replies.get("show"))
    entry = _entry(replies.get("models"), model)
    enforced = (
        (_num_ctx(show.get("parameters")), "Ollama /api/show num_ctx"),
        (_loaded_context(replies.get("ps"), model), "Ollama /api/ps context_length"),
        (_props_n_ctx(_dict(replies.get("props"))), "llama.cpp /props n_ctx"),
        (_positive(entry.get("max_model_len")), "vLLM /v1/models max_model_len"),
    )
    ceilings = (
        (_trained_context(_dict(show.get("model_info"))), "Ollama /api/show context_length"),
        (
            _positive(_dict(entry.get("meta")).get("n_ctx_train")),
            "llama.cpp /v1/models n_ctx_train",
        ),
    )
    tokens, said_by = next(((t, by) for t, by in enforced if t is not None), (None, ""))
    ceiling, capped_by = next(((t, by) for t, by in ceilings if t is not None), (None, ""))
    if tokens is None and ceiling is None:
        return None
    return ServedWindow(tokens, ceiling, said_by or capped_by)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _positive(value: Any) -> int | None:
    """A token count as servers send it: a positive int (a bool is no count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _entry(models: Any, model: str) -> dict[str, Any]:
    """`model`'s entry in an OpenAI-style model list; the only entry when there is one (llama.cpp
    serves its one model under any name)."""
    data = [e for e in _dict(models).get("data") or () if isinstance(e, dict)]
    named = [e for e in data if e.get("id") == model]
    return named[0] if named else data[0] if len(data) == 1 else {}


def _props_n_ctx(props: dict[str, Any]) -> int | None:
    """llama.cpp's context per slot (what one request may use), in /props."""
    return _positive(_dict(props.get("default_generation_settings")).get("n_ctx")) or _positive(
        props.get("n_ctx")
    )


def _num_ctx(parameters: Any) -> int | None:
    """num_ctx from Ollama's `parameters` text (one `name value` per line), where the model
    file sets it: the window Ollama really uses, cutting longer prompts without a word."""
    if not isinstance(parameters, str):
        return None
    for line in parameters.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "num_ctx" and words[1].isdigit():
            return _positive(int(words[1]))
    return None


def _loaded_context(ps: Any, model: str) -> int | None:
    """The context Ollama loaded `model` with, if it is loaded now (/api/ps)."""
    names = {model, model if ":" in model else f"{model}:latest"}
    for entry in _dict(ps).get("models") or ():
        if isinstance(entry, dict) and ({entry.get("name"), entry.get("model")} & names):
            return _positive(entry.get("context_length"))
    return None


def _trained_context(info: dict[str, Any]) -> int | None:
    """`<architecture>.context_length` in Ollama's model_info: the model's trained length."""
    arch = info.get("general.architecture")
    figure = _positive(info.get(f"{arch}.context_length")) if isinstance(arch, str) else None
    if figure is not None:
        return figure
    return next(
        (_positive(v) for k, v in info.items() if k.endswith(".context_length") and _positive(v)),
        None,
    )

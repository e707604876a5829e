"""OpenAI Chat Completions, and every OpenAI-compatible server (Ollama, vLLM, llama.cpp, ...)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from rlm_cli.errors import RetryableError
from rlm_cli.providers.base import Completion, ModelRequest, TextCallback, Usage
from rlm_cli.providers.errors import SDKErrors
from rlm_cli.providers.sdk import SDKClient, SDKProvider


class OpenAIProvider(SDKProvider):
    default_base_url = "https://api.openai.com/v1"
    base_url_env = "OPENAI_BASE_URL"

    def _make_client(self) -> SDKClient:
        import openai

        client = openai.AsyncOpenAI(**self._client_options())
        return SDKClient(client, SDKErrors.openai_style(openai))

    def _sdk_create(self, client: Any, params: dict[str, Any]) -> Awaitable[Any]:
        create: Callable[..., Awaitable[Any]] = client.chat.completions.create
        return create(**params)

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

        async def attempt(client: Any) -> Completion:
            data = await self._post_json(client, "/chat/completions", params, request.model)
            try:
                choice = data["choices"][0]
                text = choice["message"].get("content") or ""
            except (KeyError, IndexError, TypeError, AttributeError):
                raise RetryableError(
                    f"{self._what(request)}: malformed reply: no choices"
                ) from None
            return self._completion(
                request,
                text,
                _usage(data.get("usage")),
                choice.get("finish_reason"),
                data.get("id"),
            )

        return await self._retrying(request, attempt)

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        params = {
            **self._params(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }

        async def attempt(client: Any) -> Completion:
            parts: list[str] = []
            usage: Usage | None = None
            finish = request_id = None
            # `async with`: a stream stopped early (the timeout, a cancelled run) is closed.
            async with await self._sdk_create(client, params) as chunks:
                async for chunk in chunks:
                    request_id = request_id or chunk.id
                    if chunk.usage is not None:
                        usage = _usage(chunk.usage.model_dump())
                    for choice in chunk.choices or ():
                        if choice.delta and choice.delta.content:
                            parts.append(choice.delta.content)
                            on_text(choice.delta.content)
                        finish = choice.finish_reason or finish
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

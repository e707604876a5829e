"""OpenAI Chat Completions, and every OpenAI-compatible server (Ollama, vLLM, llama.cpp, ...)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from rlm_cli.providers.base import Completion, ModelRequest, TextCallback, Usage
from rlm_cli.providers.sdk import SDKProvider


class OpenAIProvider(SDKProvider):
    def _make_client(self) -> tuple[ModuleType, Any]:
        import openai

        client = openai.AsyncOpenAI(
            api_key=self._conn.api_key or "not-needed",
            base_url=self._conn.base_url,
            max_retries=0,
            timeout=self._conn.timeout_s,
        )
        return openai, client

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        conn = self._conn
        facts = conn.facts(request.model)
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        max_tokens = request.max_output_tokens or conn.max_output_tokens
        if max_tokens:
            # OpenAI itself wants max_completion_tokens; compatible servers know max_tokens.
            key = "max_completion_tokens" if conn.name == "openai" else "max_tokens"
            params[key] = max_tokens
        if conn.temperature is not None and not facts.reasoning:
            params["temperature"] = conn.temperature
        if conn.reasoning_effort and facts.reasoning:
            params["reasoning_effort"] = conn.reasoning_effort
        return params

    async def complete(self, request: ModelRequest) -> Completion:
        params = self._params(request)

        async def attempt(client: Any) -> Completion:
            response = await client.chat.completions.create(**params)
            choice = response.choices[0] if response.choices else None
            return self._completion(
                request,
                (choice.message.content or "") if choice else "",
                _usage(response.usage),
                choice.finish_reason if choice else None,
                response.id,
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
            async for chunk in await client.chat.completions.create(**params):
                request_id = request_id or chunk.id
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices or ():
                    if choice.delta and choice.delta.content:
                        parts.append(choice.delta.content)
                        on_text(choice.delta.content)
                    finish = choice.finish_reason or finish
            self._check_stream_ended(request, finish)
            return self._completion(request, "".join(parts), usage, finish, request_id)

        return await self._retrying(request, attempt)


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    details = getattr(raw, "prompt_tokens_details", None)
    return Usage(
        input_tokens=raw.prompt_tokens or 0,
        output_tokens=raw.completion_tokens or 0,
        cached_input_tokens=(getattr(details, "cached_tokens", None) or 0) if details else 0,
    )

"""OpenAI Chat Completions, and every OpenAI-compatible server (Ollama, vLLM, llama.cpp, ...)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from rlm_cli.errors import RetryableError
from rlm_cli.providers.base import Completion, ModelRequest, TextCallback, Usage
from rlm_cli.providers.retry import with_retries
from rlm_cli.providers.sdk import Connection, translate


class OpenAIProvider:
    def __init__(self, conn: Connection) -> None:
        self.name = conn.name
        self._conn = conn
        self._sdk: ModuleType | None = None
        self._client: Any = None

    def _ensure_client(self) -> tuple[ModuleType, Any]:
        # Imported on first use: the SDK costs about a second to import.
        if self._client is None:
            import openai

            self._sdk = openai
            self._client = openai.AsyncOpenAI(
                api_key=self._conn.api_key or "not-needed",
                base_url=self._conn.base_url,
                max_retries=0,  # retries are ours: bounded, visible as events, Retry-After honoured
                timeout=self._conn.timeout_s,
            )
        assert self._sdk is not None
        return self._sdk, self._client

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
        sdk, client = self._ensure_client()
        params = self._params(request)

        async def attempt() -> Completion:
            try:
                response = await client.chat.completions.create(**params)
                text = response.choices[0].message.content or "" if response.choices else ""
                return self._completion(
                    request,
                    text,
                    response.usage,
                    response.choices[0].finish_reason if response.choices else None,
                    getattr(response, "_request_id", None) or response.id,
                )
            except Exception as exc:
                raise translate(sdk, exc, self._conn, request.model) from exc

        return await with_retries(
            attempt,
            attempts=self._conn.max_retries,
            what=self._what(request),
            on_retry=request.on_retry,
        )

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        sdk, client = self._ensure_client()
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}

        async def attempt() -> Completion:
            parts: list[str] = []
            usage = finish = request_id = None
            try:
                stream = await client.chat.completions.create(**params)
                async for chunk in stream:
                    request_id = request_id or chunk.id
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices or ():
                        if choice.delta and choice.delta.content:
                            parts.append(choice.delta.content)
                            on_text(choice.delta.content)
                        finish = choice.finish_reason or finish
            except Exception as exc:
                raise translate(sdk, exc, self._conn, request.model) from exc
            if finish is None:
                raise RetryableError(
                    f"{self._what(request)}: the stream ended before the reply did"
                )
            return self._completion(request, "".join(parts), usage, finish, request_id)

        return await with_retries(
            attempt,
            attempts=self._conn.max_retries,
            what=self._what(request),
            on_retry=request.on_retry,
        )

    def _completion(
        self,
        request: ModelRequest,
        text: str,
        raw_usage: Any,
        finish: str | None,
        request_id: str | None,
    ) -> Completion:
        usage = Usage()
        if raw_usage is not None:
            details = getattr(raw_usage, "prompt_tokens_details", None)
            usage = Usage(
                input_tokens=raw_usage.prompt_tokens or 0,
                output_tokens=raw_usage.completion_tokens or 0,
                cached_input_tokens=(getattr(details, "cached_tokens", None) or 0)
                if details
                else 0,
            )
        # Usage is counted under the name asked for, so totals match the settings and the price table.
        return Completion(
            text=text,
            model=request.model,
            usage=usage,
            finish_reason=finish,
            request_id=request_id,
            cost_usd=self._conn.cost(request.model, usage),
        )

    def _what(self, request: ModelRequest) -> str:
        return f"{self._conn.name} {request.model} ({request.purpose} call)"

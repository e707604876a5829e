"""Anthropic Messages API, with prompt-cache breakpoints and extended thinking."""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

from rlm_cli.providers.base import Completion, ModelRequest, TextCallback, Usage
from rlm_cli.providers.sdk import SDKProvider

# Extended-thinking budgets for --reasoning-effort.
THINKING_BUDGET = {"low": 2_048, "medium": 8_192, "high": 24_576}
# Anthropic requires max_tokens; a root turn is one code cell, so this is plenty by default.
DEFAULT_MAX_TOKENS = 8_192
CACHE = {"type": "ephemeral"}


class AnthropicProvider(SDKProvider):
    def _make_client(self) -> tuple[ModuleType, Any]:
        import anthropic

        client = anthropic.AsyncAnthropic(
            api_key=self._conn.api_key or "not-needed",
            base_url=self._conn.base_url,
            max_retries=0,
            timeout=self._conn.timeout_s,
        )
        return anthropic, client

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        conn = self._conn
        facts = conn.facts(request.model)
        cache = request.purpose == "root"  # a one-off sub-call prompt would only pay the write
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages: list[dict[str, Any]] = [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ]
        if cache and messages:
            # Breakpoint on the latest message: the next iteration reads this whole prefix from cache.
            last = messages[-1]
            last["content"] = [{"type": "text", "text": last["content"], "cache_control": CACHE}]
        max_tokens = request.max_output_tokens or conn.max_output_tokens
        max_tokens = max_tokens or min(facts.max_output, DEFAULT_MAX_TOKENS)
        params: dict[str, Any] = {"model": request.model, "messages": messages}
        if system:
            block: dict[str, Any] = {"type": "text", "text": system}
            if cache:
                block["cache_control"] = CACHE
            params["system"] = [block]
        budget = THINKING_BUDGET.get(conn.reasoning_effort or "")
        if budget and facts.reasoning:
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
            max_tokens += budget
        elif conn.temperature is not None:
            params["temperature"] = conn.temperature
        params["max_tokens"] = max_tokens
        return params

    async def complete(self, request: ModelRequest) -> Completion:
        params = self._params(request)

        async def attempt(client: Any) -> Completion:
            response = await client.messages.create(**params)
            text = "".join(b.text for b in response.content if getattr(b, "type", "") == "text")
            return self._completion(
                request, text, _usage(response.usage), response.stop_reason, response.id
            )

        return await self._retrying(request, attempt)

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        params = {**self._params(request), "stream": True}

        async def attempt(client: Any) -> Completion:
            parts: list[str] = []
            usage = Usage()
            stop = request_id = None
            async for event in await client.messages.create(**params):
                if event.type == "message_start":
                    request_id = event.message.id
                    usage = _usage(event.message.usage)
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    parts.append(event.delta.text)
                    on_text(event.delta.text)
                elif event.type == "message_delta":
                    stop = event.delta.stop_reason or stop
                    # output_tokens in message_delta is the running total for the message.
                    usage = dataclasses.replace(usage, output_tokens=event.usage.output_tokens)
            self._check_stream_ended(request, stop)
            return self._completion(request, "".join(parts), usage, stop, request_id)

        return await self._retrying(request, attempt)


def _usage(raw: Any) -> Usage:
    """Anthropic reports uncached input, cache reads and cache writes separately; ours sums them."""
    cached = getattr(raw, "cache_read_input_tokens", None) or 0
    written = getattr(raw, "cache_creation_input_tokens", None) or 0
    return Usage(
        input_tokens=(raw.input_tokens or 0) + cached + written,
        output_tokens=raw.output_tokens or 0,
        cached_input_tokens=cached,
        cache_write_tokens=written,
    )

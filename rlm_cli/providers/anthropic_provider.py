"""Anthropic Messages API, with prompt-cache breakpoints and extended thinking."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from rlm_cli.errors import RetryableError
from rlm_cli.providers.base import Completion, ModelRequest, TextCallback, Usage
from rlm_cli.providers.errors import SDKErrors
from rlm_cli.providers.sdk import SDKClient, SDKProvider

# Extended-thinking budgets for --reasoning-effort.
THINKING_BUDGET = {"low": 2_048, "medium": 8_192, "high": 24_576}
# Anthropic requires max_tokens; a root turn is one code cell, so this is plenty by default.
DEFAULT_MAX_TOKENS = 8_192
CACHE = {"type": "ephemeral"}
# Parameters the API reads that the SDK's messages.create no longer declares (anthropic 2.15
# raises TypeError on `temperature`): sent in the body as they are, as the lean path sends them.
BODY_ONLY = ("temperature",)


class AnthropicProvider(SDKProvider):
    # The root: the SDK adds /v1/messages itself.
    default_base_url = "https://api.anthropic.com"
    base_url_env = "ANTHROPIC_BASE_URL"

    def _make_client(self) -> SDKClient:
        import anthropic

        client = anthropic.AsyncAnthropic(**self._client_options())
        return SDKClient(client, SDKErrors.openai_style(anthropic))

    def _sdk_create(self, client: Any, params: dict[str, Any]) -> Awaitable[Any]:
        declared = {k: v for k, v in params.items() if k not in BODY_ONLY}
        extra = {k: v for k, v in params.items() if k in BODY_ONLY}
        create: Callable[..., Awaitable[Any]] = client.messages.create
        return create(**declared, extra_body=extra or None)

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
            data = await self._post_json(client, "/v1/messages", params, request.model)
            try:
                blocks = data["content"]
                text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
                usage = _usage(data["usage"])
            except (KeyError, TypeError, AttributeError):
                raise RetryableError(f"{self._what(request)}: malformed reply") from None
            return self._completion(request, text, usage, data.get("stop_reason"), data.get("id"))

        return await self._retrying(request, attempt)

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        params = {**self._params(request), "stream": True}

        async def attempt(client: Any) -> Completion:
            parts: list[str] = []
            usage = Usage()
            stop = request_id = None
            # `async with`: a stream stopped early (the timeout, a cancelled run) is closed.
            async with await self._sdk_create(client, params) as events:
                async for event in events:
                    if event.type == "message_start":
                        request_id = event.message.id
                        usage = _usage(event.message.usage.model_dump())
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


def _usage(raw: dict[str, Any]) -> Usage:
    """Anthropic reports uncached input, cache reads and cache writes separately; ours sums them."""
    cached = raw.get("cache_read_input_tokens") or 0
    written = raw.get("cache_creation_input_tokens") or 0
    return Usage(
        input_tokens=(raw.get("input_tokens") or 0) + cached + written,
        output_tokens=raw.get("output_tokens") or 0,
        cached_input_tokens=cached,
        cache_write_tokens=written,
    )

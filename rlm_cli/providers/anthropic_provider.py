"""Anthropic Messages API, with prompt-cache breakpoints and extended thinking."""

from __future__ import annotations

import dataclasses
from typing import Any

from rlm_cli.errors import RetryableError
from rlm_cli.providers.base import Completion, ModelRequest, TextCallback, Usage
from rlm_cli.providers.errors import stream_error
from rlm_cli.providers.http import LeanHTTP, json_object
from rlm_cli.providers.wire import WireProvider

# Extended-thinking budgets for --reasoning-effort.
THINKING_BUDGET = {"low": 2_048, "medium": 8_192, "high": 24_576}
# Anthropic requires max_tokens; a root turn is one code cell, so this is plenty by default.
DEFAULT_MAX_TOKENS = 8_192
CACHE = {"type": "ephemeral"}
# The API version the SDK sends (tests/test_providers_http.py holds the two to each other).
API_VERSION = "2026-10-21"


class AnthropicProvider(WireProvider):
    # The root: /v1/messages is added to it, as the SDK does.
    default_base_url = "https://api.anthropic.com"
    base_url_env = "ANTHROPIC_BASE_URL"

    def _auth_headers(self) -> dict[str, str]:
        # As the SDK given a key: a bearer token ("not-needed" for a local server without one).
        return {
            "Authorization": f"Bearer {self._conn.api_key or 'not-needed'}",
            "anthropic-version": API_VERSION,
        }

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

        async def attempt(http: LeanHTTP) -> Completion:
            data = await http.post_json("/v1/messages", params, request.model)
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
        what = self._what(request)

        async def attempt(http: LeanHTTP) -> Completion:
            parts: list[str] = []
            usage = Usage()
            stop: str | None = None
            request_id: str | None = None

            def on_event(name: str | None, data: str) -> bool:
                nonlocal usage, stop, request_id
                event = json_object(data, what, self._conn)
                kind = event.get("type", name)
                if kind == "error":
                    raise stream_error(self._conn, request.model, event)
                try:
                    if kind == "message_start":
                        message = event["message"]
                        request_id = message.get("id")
                        usage = _usage(message.get("usage") or {})
                    elif kind == "content_block_delta":
                        delta = event["delta"]
                        if delta.get("type") == "text_delta" and delta.get("text"):
                            parts.append(delta["text"])
                            on_text(delta["text"])
                    elif kind == "message_delta":
                        stop = (event.get("delta") or {}).get("stop_reason") or stop
                        # output_tokens in message_delta is the running total for the message.
                        output = (event.get("usage") or {}).get("output_tokens")
                        if isinstance(output, int):
                            usage = dataclasses.replace(usage, output_tokens=output)
                    # message_stop, content_block_start/stop and ping carry nothing we read.
                except (KeyError, TypeError, AttributeError):
                    raise RetryableError(f"{what}: malformed stream event ({kind})") from None
                return kind == "message_stop"

            await http.post_stream("/v1/messages", params, request.model, on_event)
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

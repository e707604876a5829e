"""The template both wire formats (OpenAI's chat completions, Anthropic's messages) fill in:
post each call, hold it to the server's concurrency and --request-timeout, retry it, and build
the Completion.

Around it: `connection` (where and how to connect), `errors` (HTTP statuses and a stream's
error events as rlm errors) and `http` (the aiohttp session every request goes through).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from rlm_cli import __version__
from rlm_cli.errors import ProviderError, RequestTimeout, RetryableError, RlmError
from rlm_cli.providers.base import Completion, Message, ModelRequest, ServedWindow, Usage
from rlm_cli.providers.connection import Connection
from rlm_cli.providers.http import LeanHTTP
from rlm_cli.providers.retry import with_retries

# Chat formats add a few tokens per message (role, separators): counted in offline estimates.
TOKENS_PER_MESSAGE = 4
# What both SDKs send with every request, streamed or not.
JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


class WireProvider(ABC):
    """What both wire formats do alike: post to the endpoint with the format's headers, hold each
    call to the server's concurrency and --request-timeout, retry it, and build the Completion.
    Subclasses say which headers, how to build the request body, and how to read the reply."""

    cacheable: ClassVar[bool] = True
    needs_key: ClassVar[bool] = True
    # The SDK's endpoint when given no base URL, and the variable it reads one from first.
    default_base_url: ClassVar[str]
    base_url_env: ClassVar[str]

    def __init__(self, conn: Connection) -> None:
        self.name = conn.name
        self._conn = conn.at_endpoint(self.default_base_url, self.base_url_env)
        self._lean: LeanHTTP | None = None  # made on the first request, in its event loop
        # The slots of `conn.concurrency`, made in the event loop that uses them (a provider may
        # serve several asyncio.run calls, and a semaphore belongs to one loop).
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def cache_identity(self) -> dict[str, Any]:
        """The provider's name, the endpoint it sends to, and the settings it applies to every
        request: two providers that differ in any of these may answer the same request
        differently. No key: the key decides whether a reply comes, not what it says."""
        conn = self._conn
        return {
            "provider": conn.name,
            "base_url": conn.base_url,
            "temperature": conn.temperature,
            "reasoning_effort": conn.reasoning_effort,
            "max_output_tokens": conn.max_output_tokens,
        }

    @abstractmethod
    def _auth_headers(self) -> dict[str, str]:
        """The headers this format's SDK sends with every request beyond the content type:
        auth, version (tests/test_providers_http.py compares them with the SDK's own)."""

    def _http(self) -> LeanHTTP:
        """The session to the endpoint, with the format's headers (made once per event loop's
        use: `aclose` ends it)."""
        if self._lean is None:
            headers = {**JSON_HEADERS, "User-Agent": f"rlm/{__version__}", **self._auth_headers()}
            self._lean = LeanHTTP(self._conn, self._conn.base_url or "", headers)
        return self._lean

    async def served_window(self, model: str) -> ServedWindow | None:
        """What the server says about `model`'s window (rlm_cli.providers.base.WindowReporter):
        nothing, unless a kind whose servers can say (openai_provider) asks them."""
        return None

    async def aclose(self) -> None:
        """Close the connections (they belong to the event loop that made them)."""
        if self._lean is not None:
            lean, self._lean = self._lean, None
            await lean.close()

    async def _retrying(
        self, request: ModelRequest, attempt: Callable[[LeanHTTP], Awaitable[Completion]]
    ) -> Completion:
        conn = self._conn
        http = self._http()

        async def once() -> Completion:
            # A slot first (a server that takes one request at a time gets one), then the
            # timeout, so time spent queueing for the slot is not counted against the request.
            async with self._slot():
                try:
                    # --request-timeout bounds the whole request, a streamed reply included.
                    async with asyncio.timeout(conn.timeout_s):
                        return await attempt(http)
                except RlmError:
                    raise
                except TimeoutError:
                    raise RequestTimeout(
                        f"{conn.where}: the request timed out after {conn.timeout_s:g} s "
                        "(--request-timeout)"
                    ) from None
                except Exception as exc:  # a reply our reading of it did not foresee
                    raise ProviderError(
                        f"{conn.where}: {type(exc).__name__}: {conn.scrub(str(exc))[:300]}"
                    ) from exc

        return await with_retries(
            once,
            attempts=self._conn.max_retries,
            what=self._what(request),
            on_retry=request.on_retry,
        )

    def _slot(self) -> asyncio.Semaphore | _NoLimit:
        """One of the server's `concurrency` slots, or no limit."""
        if self._conn.concurrency is None:
            return _NO_LIMIT
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self._conn.concurrency))
        return self._slots[1]

    def _completion(
        self,
        request: ModelRequest,
        text: str,
        usage: Usage | None,
        finish: str | None,
        request_id: str | None,
    ) -> Completion:
        """`usage` None (or all zero): the server reported none (llama.cpp sends none in
        streams, whatever `stream_options` says), so the tokens are counted here, offline, and
        marked estimated: unknown usage is never zero, and budgets still see it."""
        if usage is None or (usage.input_tokens == 0 and usage.output_tokens == 0):
            usage = estimate_usage(request.messages, text)
        # Counted under the name asked for, so totals line up with the settings and the prices.
        return Completion(
            text=text,
            model=request.model,
            usage=usage,
            finish_reason=finish,
            request_id=request_id,
            cost_usd=self._conn.cost(request.model, usage),
        )

    def _check_stream_ended(self, request: ModelRequest, finish: str | None) -> None:
        """A stream that closes without a finish reason was cut: worth another attempt."""
        if finish is None:
            raise RetryableError(f"{self._what(request)}: the stream ended before the reply did")

    def _what(self, request: ModelRequest) -> str:
        return f"{self._conn.name} {request.model} ({request.purpose} call)"


class _NoLimit:
    """An async context manager that does nothing: a server with no concurrency of its own."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_NO_LIMIT = _NoLimit()


def estimate_usage(messages: tuple[Message, ...], reply: str) -> Usage:
    """Tokens of a call the server reported no usage for, counted with the offline tokenizer
    (cl100k_base; other models' tokenizers differ by some percent) and marked estimated."""
    from rlm_cli.inputs.tokens import count_tokens  # the tokenizer loads on first use only

    sent = sum(count_tokens(m.content) + TOKENS_PER_MESSAGE for m in messages)
    return Usage(input_tokens=sent, output_tokens=count_tokens(reply), estimated=True)

"""What the OpenAI and Anthropic providers share: keys, settings, and turning SDK errors into ours.

Both official SDKs have the same exception names (AuthenticationError, RateLimitError, ...), so
one translation serves both; it takes the SDK module as an argument and never imports it.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from rlm_cli.errors import (
    ContextLengthError,
    ProviderAuthError,
    ProviderError,
    RetryableError,
    RlmError,
)
from rlm_cli.providers.base import Completion, ModelRequest, Usage
from rlm_cli.providers.catalog import Catalog, ModelFacts
from rlm_cli.providers.retry import with_retries

# Connections kept per client: above any sensible --max-concurrency, so the limit is ours.
MAX_CONNECTIONS = 1024
TRANSPORT_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2", "aiohttp")
CONTEXT_LENGTH_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "too many tokens",
)


@dataclass(frozen=True)
class Connection:
    """Where and how one provider connects; built from Settings by rlm_cli.providers."""

    name: str
    base_url: str | None
    key_env: str | None
    api_key: str | None
    local: bool
    catalog: Catalog
    max_retries: int = 6
    timeout_s: float = 600.0
    temperature: float | None = None
    max_output_tokens: int | None = None
    reasoning_effort: str | None = None

    @property
    def where(self) -> str:
        return f"{self.name} ({self.base_url or 'default endpoint'})"

    def facts(self, model: str) -> ModelFacts:
        return self.catalog.facts(model)

    def cost(self, model: str, usage: Usage) -> float | None:
        if self.local:
            return 0.0
        price = self.facts(model).price
        return price.cost(usage) if price is not None else None

    def scrub(self, text: str) -> str:
        """Never let a key reach an error message, a trace or a log."""
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "***")
        return text


class SDKProvider:
    """What both SDK providers do alike: make the client on first use, retry each call, and
    build the Completion. Subclasses say how to make the client and how to make one attempt."""

    def __init__(self, conn: Connection) -> None:
        self.name = conn.name
        self._conn = conn
        self._sdk_client: tuple[ModuleType, Any] | None = None
        # The aiohttp session, base URL and proxy, for sub-calls.
        self._lean: tuple[Any, str, str | None] | None = None

    def _make_client(self) -> tuple[ModuleType, Any]:
        """Import the SDK (lazily: it costs about a second) and build its async client, with the
        SDK's own retries off: ours are bounded, visible as events and honour Retry-After."""
        raise NotImplementedError

    def _client_options(self) -> dict[str, Any]:
        return {
            "api_key": self._conn.api_key or "not-needed",
            "base_url": self._conn.base_url,
            "max_retries": 0,
            "timeout": self._conn.timeout_s,
        }

    async def _post_json(
        self, client: Any, path: str, params: dict[str, Any], model: str
    ) -> dict[str, Any]:
        """POST one non-streamed request with aiohttp and return the reply's JSON.

        Sub-calls come by the thousand, and the SDK's request path (typed transforms, httpx
        models, response models) costs milliseconds of CPU each, which is what bounds a fan-out
        (bench/fanout.py). The endpoint and headers, auth included, still come from the SDK's
        client, and errors map exactly as the SDK's do (`from_status`)."""
        import aiohttp

        if self._lean is None:
            headers = {**client.default_headers, **client.auth_headers}
            base = str(client.base_url).rstrip("/")
            self._lean = (
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                    timeout=aiohttp.ClientTimeout(total=self._conn.timeout_s),
                    headers={k: v for k, v in headers.items() if isinstance(v, str)},
                ),
                base,
                _proxy_for(base),
            )
        session, base, proxy = self._lean
        try:
            async with session.post(base + path, data=json.dumps(params), proxy=proxy) as response:
                raw = await response.read()
                if response.status >= 400:
                    try:
                        body: object = json.loads(raw)
                    except ValueError:
                        body = raw.decode("utf-8", "replace")
                    raise from_status(self._conn, model, response.status, body, response.headers)
        except TimeoutError:
            raise RetryableError(
                f"{self._conn.where}: the request timed out after {self._conn.timeout_s:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableError(
                f"{self._conn.where}: connection failed: {type(exc).__name__}: {self._conn.scrub(str(exc))}"
            ) from None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RetryableError(
                f"{self._conn.where}: malformed reply: {self._conn.scrub(repr(raw[:100]))}"
            )
        return data

    async def aclose(self) -> None:
        """Close the connections (they belong to the event loop that made them)."""
        if self._lean is not None:
            session, _base, _proxy = self._lean
            self._lean = None
            await session.close()
        if self._sdk_client is not None:
            _sdk, client = self._sdk_client
            self._sdk_client = None
            await client.close()

    async def _retrying(
        self, request: ModelRequest, attempt: Callable[[Any], Awaitable[Completion]]
    ) -> Completion:
        if self._sdk_client is None:
            self._sdk_client = self._make_client()
        sdk, client = self._sdk_client

        async def once() -> Completion:
            try:
                return await attempt(client)
            except RlmError:
                raise
            except Exception as exc:
                raise translate(sdk, exc, self._conn, request.model) from exc

        return await with_retries(
            once,
            attempts=self._conn.max_retries,
            what=self._what(request),
            on_retry=request.on_retry,
        )

    def _completion(
        self,
        request: ModelRequest,
        text: str,
        usage: Usage | None,
        finish: str | None,
        request_id: str | None,
    ) -> Completion:
        """`usage` None: the server reported none (some compatible servers don't), so the cost
        is unknown rather than free."""
        # Counted under the name asked for, so totals line up with the settings and the prices.
        return Completion(
            text=text,
            model=request.model,
            usage=usage or Usage(),
            finish_reason=finish,
            request_id=request_id,
            cost_usd=None if usage is None else self._conn.cost(request.model, usage),
        )

    def _check_stream_ended(self, request: ModelRequest, finish: str | None) -> None:
        """A stream that closes without a finish reason was cut: worth another attempt."""
        if finish is None:
            raise RetryableError(f"{self._what(request)}: the stream ended before the reply did")

    def _what(self, request: ModelRequest) -> str:
        return f"{self._conn.name} {request.model} ({request.purpose} call)"


def _proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY, NO_PROXY), as the SDK's client
    would use: looked up once, where aiohttp's trust_env would read it on every request."""
    proxies = urllib.request.getproxies()
    parts = urllib.parse.urlsplit(url)
    proxy = proxies.get(parts.scheme)
    if proxy is None or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def resolve_key(name: str, key_env: str | None, local: bool) -> str | None:
    """The API key from its environment variable; a hosted provider without one is an error."""
    key = os.environ.get(key_env) if key_env else None
    if key or local:
        return key
    variable = key_env or "the API key variable"
    raise ProviderAuthError(
        f"{name}: no API key; set {variable} (or name another variable with --api-key-env)"
    )


def translate(sdk: ModuleType, exc: BaseException, conn: Connection, model: str) -> RlmError:
    """Map an SDK or transport exception to an RlmError; RetryableError for transient ones."""
    where = conn.where
    if isinstance(exc, sdk.APIStatusError):
        headers = getattr(exc.response, "headers", None)
        return from_status(conn, model, exc.status_code, exc.body or exc.message, headers)
    if isinstance(exc, sdk.APITimeoutError | asyncio.TimeoutError):
        return RetryableError(f"{where}: the request timed out after {conn.timeout_s:g} s")
    if isinstance(exc, sdk.APIConnectionError):
        return RetryableError(
            f"{where}: connection failed: {conn.scrub(str(exc.__cause__ or exc))}"
        )
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError):
        return RetryableError(f"{where}: malformed reply: {conn.scrub(str(exc))[:200]}")
    if type(exc).__module__.split(".")[0] in TRANSPORT_MODULES:
        return RetryableError(
            f"{where}: connection broke: {type(exc).__name__}: {conn.scrub(str(exc))}"
        )
    if isinstance(exc, sdk.APIError):
        return RetryableError(f"{where}: {conn.scrub(str(exc))[:300]}")
    return ProviderError(f"{where}: {type(exc).__name__}: {conn.scrub(str(exc))[:300]}")


def from_status(
    conn: Connection, model: str, status: int, body: object, headers: Mapping[str, str] | None
) -> RlmError:
    """The error an HTTP error status means, whichever client received it."""
    message = _message(body, conn)
    if status in (401, 403):
        variable = conn.key_env or "the provider's API key variable"
        return ProviderAuthError(
            f"{conn.name}: authentication failed (HTTP {status}); check that {variable} "
            "holds a valid API key"
        )
    if status == 404:
        return ProviderError(
            f"{conn.name}: unknown model {model!r} (HTTP 404: {message}); "
            "check --model / --sub-model (`rlm models` lists known ones)"
        )
    if status in (400, 413) and any(hint in message.lower() for hint in CONTEXT_LENGTH_HINTS):
        return ContextLengthError(f"{conn.name}: the prompt is too long for {model}: {message}")
    if status >= 500 or status in (408, 409, 429):
        return RetryableError(
            f"{conn.where}: HTTP {status}: {message}",
            _retry_after(headers),
            rate_limited=status == 429,
        )
    return ProviderError(f"{conn.where}: HTTP {status}: {message}")


def _message(body: object, conn: Connection) -> str:
    message = body
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else error
        code = error.get("code") if isinstance(error, dict) else None
        if code and message:
            message = f"{message} ({code})"
    return conn.scrub(str(message or ""))[:500]


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if headers is None:
        return None
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare; fall back to our own backoff
    return None

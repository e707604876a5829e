"""What the OpenAI and Anthropic providers share: keys, settings, and turning SDK errors into ours.

Both official SDKs have the same exception names (AuthenticationError, RateLimitError, ...), so
one translation serves both; it takes the SDK module as an argument and never imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar

from rlm_cli.config import mask_keys
from rlm_cli.errors import (
    ContextLengthError,
    ProviderAuthError,
    ProviderError,
    RequestTimeout,
    RetryableError,
    RlmError,
)
from rlm_cli.providers.base import Completion, Message, ModelRequest, Usage
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
# How much of a server's own error text an error message keeps (made one line first).
SERVER_TEXT_CHARS = 300
# Chat formats add a few tokens per message (role, separators): counted in offline estimates.
TOKENS_PER_MESSAGE = 4


# The host of OpenAI's own API: requests there name their output cap max_completion_tokens.
OPENAI_HOST = "api.openai.com"


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
    # Requests this server takes at once (root streams and sub-calls together); None: no limit
    # of its own. llama.cpp, for one, cuts a running stream when another request arrives.
    concurrency: int | None = None
    kind: str = "openai"  # the wire format: "openai" (and compatible servers) or "anthropic"

    @property
    def where(self) -> str:
        return f"{self.name} ({self.base_url or 'default endpoint'})"

    @property
    def official_openai(self) -> bool:
        """OpenAI's own API (no base URL, or OPENAI_HOST), not a compatible server."""
        if not self.base_url:
            return True
        return urllib.parse.urlsplit(self.base_url).hostname == OPENAI_HOST

    def at_endpoint(self, default_url: str, env: str) -> Connection:
        """This connection with the endpoint it will really use: the base URL given, else the
        one in the SDK's own variable `env` (as the SDK would read it), else the SDK's default;
        without a trailing slash. Resolved here, and handed to the SDK explicitly, so the URL in
        messages and in the cache identity is the one requests go to."""
        url = self.base_url or os.environ.get(env) or default_url
        return dataclasses.replace(self, base_url=url.rstrip("/"))

    def facts(self, model: str) -> ModelFacts:
        return self.catalog.facts(model)

    def cost(self, model: str, usage: Usage) -> float | None:
        if self.local:
            return 0.0
        price = self.facts(model).price
        return price.cost(usage) if price is not None else None

    def scrub(self, text: str) -> str:
        """Never let a key reach an error message, a trace or a log: ours, or anything shaped
        like one (a server may echo a key it was sent, or quote another)."""
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "***")
        return mask_keys(text)


class SDKProvider:
    """What both SDK providers do alike: make the client on first use, retry each call, and
    build the Completion. Subclasses say how to make the client and how to make one attempt,
    and where the SDK sends requests when given no base URL."""

    cacheable: ClassVar[bool] = True
    needs_key: ClassVar[bool] = True
    # The SDK's endpoint when given no base URL, and the variable it reads one from first.
    default_base_url: ClassVar[str]
    base_url_env: ClassVar[str]

    def __init__(self, conn: Connection) -> None:
        self.name = conn.name
        self._conn = conn.at_endpoint(self.default_base_url, self.base_url_env)
        self._sdk_client: tuple[ModuleType, Any] | None = None
        # The aiohttp session, base URL and proxy, for sub-calls.
        self._lean: tuple[Any, str, str | None] | None = None
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
                    raise from_status(
                        self._conn, model, response.status, body, response.headers, base + path
                    )
        except TimeoutError:
            raise RequestTimeout(
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

        conn = self._conn

        async def once() -> Completion:
            # A slot first (a server that takes one request at a time gets one), then the
            # timeout, so time spent queueing for the slot is not counted against the request.
            async with self._slot():
                try:
                    # --request-timeout bounds the whole request, a streamed reply included: the
                    # SDKs' own timeout is only the longest gap between two chunks.
                    async with asyncio.timeout(conn.timeout_s):
                        return await attempt(client)
                except RlmError:
                    raise
                except TimeoutError:
                    raise RequestTimeout(
                        f"{conn.where}: the request timed out after {conn.timeout_s:g} s "
                        "(--request-timeout)"
                    ) from None
                except Exception as exc:
                    raise translate(sdk, exc, conn, request.model) from exc

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
        url = _request_url(exc.response)
        # exc.body is the parsed JSON, or the text when it was not JSON ("" when empty).
        body = exc.body if exc.body not in (None, "") else _response_text(exc.response)
        return from_status(conn, model, exc.status_code, body, headers, url)
    if isinstance(exc, sdk.APITimeoutError | asyncio.TimeoutError):
        return RequestTimeout(f"{where}: the request timed out after {conn.timeout_s:g} s")
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
    conn: Connection,
    model: str,
    status: int,
    body: object,
    headers: Mapping[str, str] | None,
    url: str | None = None,
) -> RlmError:
    """The error an HTTP error status means, whichever client received it. The server's own
    words are kept (one line, cut short): they are often the only clue to what is wrong."""
    message = _message(body, conn)
    if status in (401, 403):
        variable = conn.key_env or "the provider's API key variable"
        return ProviderAuthError(
            f"{conn.name}: authentication failed (HTTP {status}{_said(message)}); check that "
            f"{variable} holds a valid API key"
        )
    if status == 404 and not _names_a_model(message, model):
        # A 404 that says nothing of a model is the route itself missing: the wrong base URL
        # (llama.cpp "File Not Found", vLLM {"detail": "Not Found"}, Ollama "404 page not found").
        return ProviderError(
            f"{conn.name}: no API at this URL ({conn.scrub(url or conn.base_url or '?')}): "
            f"HTTP 404{_said(message)}; check --base-url ({_base_url_hint(conn)})"
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
    """The server's own words from an error body (OpenAI, Anthropic, FastAPI, plain text or an
    HTML page), one line, cut to SERVER_TEXT_CHARS, with the key scrubbed."""
    message = body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail")
            code = error.get("code")
            if isinstance(code, str) and message and code not in str(message):
                message = f"{message} ({code})"
            if not message:  # no field we know: the whole body, rather than nothing
                message = json.dumps(body, ensure_ascii=False)
        else:
            message = error
    text = str(message or "")
    if "<" in text and re.search(r"</?(html|body|head|title|h1|p)\b", text, re.I):
        text = re.sub(r"<[^>]*>", " ", text)  # an HTML error page: its words, not its markup
    text = " ".join(conn.scrub(text).split())
    return text if len(text) <= SERVER_TEXT_CHARS else text[: SERVER_TEXT_CHARS - 1] + "…"


def _base_url_hint(conn: Connection) -> str:
    """What a right --base-url looks like for this wire format."""
    if conn.kind == "anthropic":
        # The Anthropic SDK adds /v1/messages itself: a URL ending in /v1 asks for /v1/v1/...
        return "the server's root: /v1/messages is added to it, so leave /v1 off"
    return "it usually ends in /v1"


def _said(message: str) -> str:
    return f": {message}" if message else " (the server said nothing more)"


def _names_a_model(message: str, model: str) -> bool:
    """Whether a 404's text is about a model (so the route exists and the model does not)."""
    lowered = message.lower()
    # The name as a word: a model called "o" is not named by "Not Found".
    named = bool(model) and re.search(rf"(?<![\w.-]){re.escape(model.lower())}(?![\w.-])", lowered)
    return "model" in lowered or bool(named)


def _request_url(response: Any) -> str | None:
    try:
        return str(response.request.url)
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is set
        return None


def _response_text(response: Any) -> str:
    try:
        return str(response.text)
    except Exception:  # a streamed response not read: no text to give
        return ""


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

"""Turning what an SDK or an HTTP server reports into the rlm error tree (rlm_cli.errors):
RetryableError for what may pass, ProviderAuthError, ContextLengthError and ProviderError for
what will not. The server's own words are kept, scrubbed of keys."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

from rlm_cli.errors import (
    ContextLengthError,
    ProviderAuthError,
    ProviderError,
    RequestTimeout,
    RetryableError,
    RlmError,
)
from rlm_cli.providers.connection import Connection

# Exceptions from these packages are the transport breaking under the SDK: worth a retry.
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

ErrorTypes = tuple[type[BaseException], ...]


class HTTPFailure(NamedTuple):
    """An HTTP error status as an SDK exception carries it."""

    status: int
    body: object  # the parsed JSON, or the text
    headers: Mapping[str, str] | None
    url: str | None


def _openai_style_failure(exc: Any) -> HTTPFailure:
    """The status, body, headers and URL of an openai-style APIStatusError."""
    # exc.body is the parsed JSON, or the text when it was not JSON ("" when empty).
    body = exc.body if exc.body not in (None, "") else _response_text(exc.response)
    headers = getattr(exc.response, "headers", None)
    return HTTPFailure(exc.status_code, body, headers, _request_url(exc.response))


@dataclass(frozen=True)
class SDKErrors:
    """The exceptions one SDK raises, by what they mean, so `translate` needs no SDK's names.
    Each provider module says which of its SDK's classes are which (`_make_client`)."""

    status: ErrorTypes  # the server answered with an error status (read by `failure`)
    timeout: ErrorTypes
    connection: ErrorTypes  # no answer: refused, reset, DNS
    malformed: ErrorTypes  # an answer the SDK could not read
    other: ErrorTypes  # the SDK's base class: any other error of its own, worth a retry
    failure: Callable[[Any], HTTPFailure] = _openai_style_failure

    @classmethod
    def openai_style(cls, sdk: ModuleType) -> SDKErrors:
        """The classes of the SDKs built like openai's (openai, anthropic: the same names)."""
        return cls(
            status=(sdk.APIStatusError,),
            timeout=(sdk.APITimeoutError,),
            connection=(sdk.APIConnectionError,),
            malformed=(sdk.APIResponseValidationError,),
            other=(sdk.APIError,),
        )


def translate(errors: SDKErrors, exc: BaseException, conn: Connection, model: str) -> RlmError:
    """Map an SDK or transport exception to an RlmError; RetryableError for transient ones."""
    where = conn.where
    if isinstance(exc, errors.status):
        status, body, headers, url = errors.failure(exc)
        return from_status(conn, model, status, body, headers, url)
    # Timeouts before connection errors: an SDK's timeout may be a kind of connection error.
    if isinstance(exc, (*errors.timeout, TimeoutError)):
        return RequestTimeout(f"{where}: the request timed out after {conn.timeout_s:g} s")
    if isinstance(exc, errors.connection):
        return RetryableError(
            f"{where}: connection failed: {conn.scrub(str(exc.__cause__ or exc))}"
        )
    if isinstance(exc, (*errors.malformed, json.JSONDecodeError)):
        return RetryableError(f"{where}: malformed reply: {conn.scrub(str(exc))[:200]}")
    if type(exc).__module__.split(".")[0] in TRANSPORT_MODULES:
        return RetryableError(
            f"{where}: connection broke: {type(exc).__name__}: {conn.scrub(str(exc))}"
        )
    if isinstance(exc, errors.other):
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

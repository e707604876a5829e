"""Turning what a model server reports (an HTTP status, an error event in a stream) into the rlm
error tree (rlm_cli.errors), as the vendor SDKs' exceptions mean it:
RetryableError for what may pass, ProviderAuthError, ContextLengthError and ProviderError for
what will not. The server's own words are kept, scrubbed of keys."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from rlm_cli.errors import (
    ContextLengthError,
    ProviderAuthError,
    ProviderError,
    RetryableError,
    RlmError,
)
from rlm_cli.providers.connection import Connection

CONTEXT_LENGTH_HINTS = (
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "too many tokens",
)
# How much of a server's own error text an error message keeps (made one line first).
SERVER_TEXT_CHARS = 300

# Anthropic's error types, as the HTTP statuses the same error gets when it comes before the
# stream starts: an error event mid-stream then means what that status means.
ANTHROPIC_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def stream_error(conn: Connection, model: str, body: object) -> RlmError:
    """The error an error event in a stream means (OpenAI sends `{"error": {...}}` as data,
    Anthropic an `error` event). Anthropic's type says which status it stands for; otherwise
    a context-length message is the request's fault, and anything else the server's, worth
    another attempt (the SDKs raise a retryable APIError)."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    status = ANTHROPIC_ERROR_STATUS.get(kind) if isinstance(kind, str) else None
    if status is None:
        text = _message(body, conn).lower()
        status = 400 if any(hint in text for hint in CONTEXT_LENGTH_HINTS) else 500
    return from_status(conn, model, status, body, None)


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

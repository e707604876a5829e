"""Every request to a model server, posted with aiohttp: plain JSON replies and SSE streams.

The vendor SDKs cost about a second to import and milliseconds of CPU per call (typed
transforms that re-walk the whole history, response models), which would be most of a short
run and most of each loop iteration. They stay the reference: tests/test_providers_http.py checks
that this path sends what the SDK sends (path, body, auth and content headers) and reads its
replies, streamed and plain, as the SDK reads them; `errors.from_status` maps statuses as the
SDK's exceptions mean them.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from rlm_cli.errors import ProviderError, RequestTimeout, RetryableError
from rlm_cli.providers.connection import Connection, proxy_for
from rlm_cli.providers.errors import from_status

# Connections kept per session: above any sensible --max-concurrency, so the limit is ours.
MAX_CONNECTIONS = 1024
# The most one server-sent event may hold. A reply's deltas are small; a server that sends more
# without an event boundary is broken (or hostile), and is not read into memory without end.
MAX_EVENT_BYTES = 16 * 1024 * 1024

# Told of each server-sent event: its `event:` name (None when unnamed) and its data; returns
# True once the stream is complete (OpenAI's [DONE]), so the rest is not waited for.
EventHandler = Callable[[str | None, str], bool]


class LeanHTTP:
    """One aiohttp session posting JSON to one endpoint, with the headers (auth included) the
    provider gives. Made inside the event loop that uses it (an aiohttp session belongs to one
    loop); `close` it before that loop ends."""

    def __init__(self, conn: Connection, base: str, headers: dict[str, str]) -> None:
        import aiohttp  # here: `rlm --help` never pays for it

        self._aiohttp = aiohttp
        self._conn = conn
        self._base = base.rstrip("/")
        self._proxy = proxy_for(self._base)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=conn.timeout_s),
            headers=headers,
        )

    async def post_json(self, path: str, params: dict[str, Any], model: str) -> dict[str, Any]:
        """POST one non-streamed request and return the reply's JSON; an error status, a
        timeout, a dropped connection and a malformed reply each become our error."""
        conn = self._conn
        with self._errors_as_ours():
            async with self._post(path, params) as reply:
                raw = await reply.read()
                self._check_status(reply, raw, model)
        return json_object(raw, conn.where, conn)

    async def post_stream(
        self, path: str, params: dict[str, Any], model: str, on_event: EventHandler
    ) -> None:
        """POST one streamed request and hand each server-sent event to `on_event` as it
        arrives, until it says the stream is complete or the server closes it. The response is
        closed on the way out, however that is (the timeout, a cancelled run, an error)."""
        with self._errors_as_ours():
            async with self._post(path, params) as reply:
                if reply.status >= 300:
                    self._check_status(reply, await reply.read(), model)
                events = _SSEReader(self._conn.where)
                async for chunk in reply.content.iter_any():
                    for name, data in events.feed(chunk):
                        if on_event(name, data):
                            return
                for name, data in events.end():
                    if on_event(name, data):
                        return

    def _post(self, path: str, params: dict[str, Any]) -> Any:
        # Redirects are not followed: the headers carry the key, and a model API that redirects
        # a POST is misconfigured (the status says so, in `from_status`).
        return self._session.post(
            self._base + path, data=json.dumps(params), proxy=self._proxy, allow_redirects=False
        )

    def _check_status(self, reply: Any, raw: bytes, model: str) -> None:
        if reply.status < 300:
            return
        try:
            body: object = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        raise from_status(self._conn, model, reply.status, body, reply.headers, str(reply.url))

    def _errors_as_ours(self) -> _TransportErrors:
        return _TransportErrors(self._conn, self._aiohttp.ClientError)

    @property
    def base(self) -> str:
        """The endpoint's base URL, without a trailing slash."""
        return self._base

    @property
    def server_root(self) -> str:
        """The server's own root, where llama.cpp's /props and Ollama's /api live: the base URL
        without its OpenAI-style /v1."""
        return self._base.removesuffix("/v1")

    async def probe(
        self, method: str, url: str, body: dict[str, Any] | None, timeout_s: float
    ) -> Any:
        """One small informational request (what a server serves) and its JSON, or None for
        anything else: an error status, a timeout, a refused connection, a reply that is not
        JSON. Never raises (but for cancellation). Sent only to this endpoint's own scheme, host
        and port, redirects not followed: the session's headers carry the key."""
        if _origin(url) != _origin(self._base):
            return None
        try:
            async with self._session.request(
                method,
                url,
                data=None if body is None else json.dumps(body),
                proxy=self._proxy,
                allow_redirects=False,
                timeout=self._aiohttp.ClientTimeout(total=timeout_s),
            ) as reply:
                if reply.status != 200:
                    return None
                return json.loads(await reply.read())
        except (TimeoutError, self._aiohttp.ClientError, ValueError, OSError):
            return None

    async def close(self) -> None:
        await self._session.close()


def json_object(raw: bytes | str, what: str, conn: Connection) -> dict[str, Any]:
    """`raw` as the JSON object a reply, or one streamed event, must be; anything else is a
    garbled reply, worth another attempt."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise RetryableError(f"{what}: malformed reply: {conn.scrub(repr(raw[:100]))}")
    return data


class _TransportErrors:
    """Inside it, the transport's failures become ours: a timeout, a connection refused, reset
    or cut mid-reply (worth another attempt), with the key scrubbed from what it says."""

    def __init__(self, conn: Connection, client_error: type[BaseException]) -> None:
        self._conn = conn
        self._client_error = client_error

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        conn = self._conn
        if exc is None or kind is None:
            return
        if issubclass(kind, TimeoutError):
            raise RequestTimeout(
                f"{conn.where}: the request timed out after {conn.timeout_s:g} s "
                "(--request-timeout)"
            ) from None
        if issubclass(kind, (self._client_error, OSError)):
            raise RetryableError(
                f"{conn.where}: connection failed: {kind.__name__}: {conn.scrub(str(exc))}"
            ) from None


class _SSEReader:
    """Server-sent events out of the bytes of a stream, in whatever pieces they arrive: events
    end at a blank line; `data:` lines are joined, `event:` names the event, and comments
    (`:` lines, which servers send to keep a connection alive) are skipped."""

    def __init__(self, where: str) -> None:
        self._where = where
        self._pending = b""
        self._name: str | None = None
        self._data: list[str] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[tuple[str | None, str]]:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_EVENT_BYTES:
            raise self._too_big()
        events = []
        for raw in lines:
            event = self._line(raw.removesuffix(b"\r").decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def end(self) -> list[tuple[str | None, str]]:
        """The last event, when the stream closed without the blank line after it."""
        events = self.feed(b"\n") if self._pending else []
        if self._data:
            events.append(self._dispatch())
        return events

    def _line(self, line: str) -> tuple[str | None, str] | None:
        if not line:
            if self._data:
                return self._dispatch()
            self._reset()
            return None
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._size += len(value)
            if self._size > MAX_EVENT_BYTES:
                raise self._too_big()
            self._data.append(value)
        elif field == "event":
            self._name = value
        return None

    def _dispatch(self) -> tuple[str | None, str]:
        event = (self._name, "\n".join(self._data))
        self._reset()
        return event

    def _reset(self) -> None:
        self._name, self._data, self._size = None, [], 0

    def _too_big(self) -> ProviderError:
        return ProviderError(
            f"{self._where}: the server sent a streamed event over {MAX_EVENT_BYTES // 2**20} MiB: not a "
            "model's reply"
        )


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is no number: no origin anything matches
        return ("", None, None)
    return (parts.scheme, parts.hostname, port or {"http": 80, "https": 443}.get(parts.scheme))

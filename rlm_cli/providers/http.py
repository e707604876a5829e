"""The lean request path: non-streamed calls posted with aiohttp instead of through the SDK.

Sub-calls come by the thousand, and an SDK's request path (typed transforms, httpx models,
response models) costs milliseconds of CPU each, which is what bounds a fan-out
(bench/fanout.py). The endpoint and the headers, auth included, still come from the SDK's own
client (`sdk_endpoint`), and errors map exactly as the SDK's do (`from_status`).

This is the code an SDK upgrade is most likely to break: it reads three attributes of the
SDK's client. tests/test_providers_http.py checks that it sends what the SDK sends.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from rlm_cli.errors import RequestTimeout, RetryableError
from rlm_cli.providers.connection import Connection, proxy_for
from rlm_cli.providers.errors import from_status

# Connections kept per session: above any sensible --max-concurrency, so the limit is ours.
MAX_CONNECTIONS = 1024


def sdk_endpoint(client: Any) -> tuple[str, dict[str, str]]:
    """The base URL (no trailing slash) and the headers, auth included, that an openai-style
    SDK client sends with every request. Headers the SDK leaves out on purpose (its `Omit`
    markers) are left out here too."""
    headers = {**client.default_headers, **client.auth_headers}
    base = str(client.base_url).rstrip("/")
    return base, {k: v for k, v in headers.items() if isinstance(v, str)}


class LeanHTTP:
    """One aiohttp session posting JSON to one endpoint. Made inside the event loop that uses
    it (an aiohttp session belongs to one loop); `close` it before that loop ends."""

    def __init__(self, conn: Connection, base: str, headers: dict[str, str]) -> None:
        import aiohttp  # here: `rlm --help` never pays for it

        self._aiohttp = aiohttp
        self._conn = conn
        self._base = base
        self._proxy = proxy_for(base)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=conn.timeout_s),
            headers=headers,
        )

    @classmethod
    def for_client(cls, conn: Connection, client: Any) -> LeanHTTP:
        """A session to the SDK client's endpoint, with its headers."""
        base, headers = sdk_endpoint(client)
        return cls(conn, base, headers)

    async def post_json(self, path: str, params: dict[str, Any], model: str) -> dict[str, Any]:
        """POST one non-streamed request and return the reply's JSON; an error status, a
        timeout, a dropped connection and a malformed reply each become our error."""
        conn, url = self._conn, self._base + path
        try:
            async with self._session.post(url, data=json.dumps(params), proxy=self._proxy) as reply:
                raw = await reply.read()
                if reply.status >= 400:
                    try:
                        body: object = json.loads(raw)
                    except ValueError:
                        body = raw.decode("utf-8", "replace")
                    raise from_status(conn, model, reply.status, body, reply.headers, url)
        except TimeoutError:
            raise RequestTimeout(
                f"{conn.where}: the request timed out after {conn.timeout_s:g} s"
            ) from None
        except self._aiohttp.ClientError as exc:
            raise RetryableError(
                f"{conn.where}: connection failed: {type(exc).__name__}: {conn.scrub(str(exc))}"
            ) from None
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RetryableError(f"{conn.where}: malformed reply: {conn.scrub(repr(raw[:100]))}")
        return data

    @property
    def base(self) -> str:
        """The endpoint's base URL, as the SDK client has it (no trailing slash)."""
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


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is no number: no origin anything matches
        return ("", None, None)
    return (parts.scheme, parts.hostname, port or {"http": 80, "https": 443}.get(parts.scheme))

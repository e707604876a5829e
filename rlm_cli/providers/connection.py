"""Where and how one provider connects: its endpoint, its key, the proxy on the way, and the
scrubbing that keeps the key out of every message."""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from dataclasses import dataclass

from rlm_cli.config import mask_keys
from rlm_cli.errors import ProviderAuthError
from rlm_cli.providers.base import Usage
from rlm_cli.providers.catalog import Catalog, ModelFacts, hosted_hosts

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

    @property
    def users_server(self) -> bool:
        """A server of the user's (a local preset, or any base URL that is not a hosted API's),
        which may be asked what window it serves; a hosted API never is (its windows are in
        the catalog). Read after `at_endpoint`, so the URL is the one requests go to."""
        if not self.base_url:
            return False
        host = urllib.parse.urlsplit(self.base_url).hostname
        return host is not None and host not in hosted_hosts()

    def at_endpoint(self, default_url: str, env: str) -> Connection:
        """This connection with the endpoint it will really use: the base URL given, else the
        one in the SDK's own variable `env` (as the SDK would read it), else the SDK's default;
        without a trailing slash. Resolved once, here, so the URL in messages and in the cache
        identity is the one requests go to."""
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


def resolve_key(name: str, key_env: str | None, local: bool) -> str | None:
    """The API key from its environment variable; a hosted provider without one is an error."""
    key = os.environ.get(key_env) if key_env else None
    if key or local:
        return key
    variable = key_env or "the API key variable"
    raise ProviderAuthError(
        f"{name}: no API key; set {variable} (or name another variable with --api-key-env)"
    )


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTP(S)_PROXY, NO_PROXY), as an SDK's client
    would use: looked up once, where aiohttp's trust_env would read it on every request."""
    # Imported here: urllib.request costs ~50 ms, and `rlm --help` imports this module.
    import urllib.request

    proxies = urllib.request.getproxies()
    parts = urllib.parse.urlsplit(url)
    proxy = proxies.get(parts.scheme)
    if proxy is None or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy

"""One true capacity per worker model (issue 12, item 2): the catalog's input limits, the windows
learned for a run and their order (server, catalog, --sub-window, default), the servers asked
(llama.cpp, vLLM, Ollama, played by the loopback FakeLLM), and end to end: the figure the root
is told and the one the sub-call guard refuses past are the same, and derive from the server's."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from rlm_cli.bench.fake_llm import FakeLLM
from rlm_cli.config import Settings
from rlm_cli.engine import capacity
from rlm_cli.engine.caching import CachingProvider
from rlm_cli.errors import ConfigError
from rlm_cli.inputs.model import CHARS_PER_TOKEN
from rlm_cli.providers.anthropic_provider import AnthropicProvider
from rlm_cli.providers.base import Completion, ModelRequest, ServedWindow, TextCallback
from rlm_cli.providers.catalog import DEFAULT_WINDOW, Catalog, providers
from rlm_cli.providers.connection import Connection
from rlm_cli.providers.http import LeanHTTP
from rlm_cli.providers.openai_provider import OpenAIProvider, served
from tests.conftest import invoke_rlm, repl


def chars(window: int, max_output: int = 4_096) -> int:
    """The prompt_chars of a window (tokens) for a model with `max_output`."""
    return (window - min(max_output, window // 4)) * CHARS_PER_TOKEN


# ----- the catalog -----


def test_an_input_limit_below_the_window_bounds_the_prompt() -> None:
    """GPT-5: a 400K window, 272K of it input. Without the limit the figure was 1.2M characters,
    above what the API accepts."""
    facts = Catalog().facts("gpt-5-mini")
    assert (facts.window, facts.input_limit) == (400_000, 272_000)
    assert facts.prompt_chars == 272_000 * CHARS_PER_TOKEN
    other = Catalog().facts("gpt-4o")  # no limit of its own: the window less room for a reply
    assert other.input_limit is None and other.prompt_chars == (128_000 - 16_384) * 4


def test_a_prices_file_may_set_an_input_limit(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  house-model: {window: 100000, input_limit: 20000}\n")
    facts = Catalog(str(prices)).facts("house-model")
    assert facts.known and facts.input_limit == 20_000
    assert facts.prompt_chars == 20_000 * CHARS_PER_TOKEN
    prices.write_text("models:\n  house-model: {window: 100000, input_limits: 20000}\n")
    with pytest.raises(ConfigError, match="unknown key 'input_limits'"):
        Catalog(str(prices))


def test_a_learned_window_is_what_facts_say_from_then_on() -> None:
    catalog = Catalog()
    assert catalog.facts("my-local-model").source == "default"
    assert catalog.facts("my-local-model").window == DEFAULT_WINDOW
    assert catalog.facts("gpt-4o").source == "catalog"
    catalog.learn("my-local-model", 8_192, "server", "llama.cpp /props n_ctx")
    facts = catalog.facts("my-local-model")
    assert (facts.window, facts.source, facts.source_detail) == (
        8_192,
        "server",
        "llama.cpp /props n_ctx",
    )
    assert not facts.known  # still not a catalog model: its output bound is the default's
    assert facts.prompt_chars == chars(8_192)
    assert Catalog().facts("my-local-model").window == DEFAULT_WINDOW  # one catalog's only


def test_a_learned_window_keeps_the_input_limit() -> None:
    catalog = Catalog()
    catalog.learn("gpt-5", 1_000_000, "server")
    assert catalog.facts("gpt-5").prompt_chars == 272_000 * CHARS_PER_TOKEN


# ----- capacity.learn: which figure wins -----


class Reporter:
    """A worker whose server says `said` (or raises it)."""

    name = "reporter"
    cacheable = True
    needs_key = False

    def __init__(self, said: ServedWindow | BaseException | None) -> None:
        self.said = said
        self.asked: list[str] = []

    def cache_identity(self) -> dict[str, Any]:
        return {"provider": self.name}

    async def complete(self, request: ModelRequest) -> Completion:
        raise AssertionError("no model call while learning the window")

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        raise AssertionError("no model call while learning the window")

    async def aclose(self) -> None:
        pass

    async def served_window(self, model: str) -> ServedWindow | None:
        self.asked.append(model)
        if isinstance(self.said, BaseException):
            raise self.said
        return self.said


def learned(
    said: ServedWindow | BaseException | None, model: str = "local-m", **settings: Any
) -> tuple[int, str]:
    catalog = Catalog()
    worker = Reporter(said)
    asyncio.run(capacity.learn(catalog, worker, Settings(sub_model=model, **settings)))
    assert worker.asked == [model]
    facts = catalog.facts(model)
    return facts.window, facts.source


@pytest.mark.parametrize(
    ("said", "model", "sub_window", "expected"),
    [
        # The server's enforced figure wins over everything, the catalog's too.
        (ServedWindow(8_192), "local-m", 65_536, (8_192, "server")),
        (ServedWindow(16_384), "qwen3-coder", None, (16_384, "server")),
        # Said nothing: the catalog's, else --sub-window, else the default.
        (None, "qwen3-coder", 65_536, (262_144, "catalog")),
        (None, "local-m", 65_536, (65_536, "sub_window")),
        (None, "local-m", None, (DEFAULT_WINDOW, "default")),
        # A trained length only caps the others: below them it wins, above them it is no figure.
        (ServedWindow(None, ceiling=16_384), "local-m", 65_536, (16_384, "server")),
        (ServedWindow(None, ceiling=16_384), "qwen3-coder", None, (16_384, "server")),
        (ServedWindow(None, ceiling=131_072), "local-m", 65_536, (65_536, "sub_window")),
        (ServedWindow(None, ceiling=131_072), "local-m", None, (DEFAULT_WINDOW, "default")),
        # A report that fails is no report.
        (RuntimeError("boom"), "local-m", 65_536, (65_536, "sub_window")),
    ],
)
def test_the_server_then_the_catalog_then_sub_window_then_the_default(
    said: ServedWindow | BaseException | None,
    model: str,
    sub_window: int | None,
    expected: tuple[int, str],
) -> None:
    assert learned(said, model, sub_window=sub_window) == expected


def test_the_server_is_asked_through_the_reply_cache() -> None:
    """The tree wraps the worker in the reply cache; the window is still asked of the server."""

    class Store:
        def key(self, provider: str, request: ModelRequest, extra: dict[str, Any]) -> str:
            return "k"

        def get(self, key: str) -> Completion | None:
            return None

        def put(self, key: str, completion: Completion) -> None:
            pass

    catalog, inner = Catalog(), Reporter(ServedWindow(8_192))
    worker = CachingProvider(inner, Store())
    asyncio.run(capacity.learn(catalog, worker, Settings(sub_model="local-m")))
    assert inner.asked == ["local-m"] and catalog.facts("local-m").window == 8_192


# ----- what each server's replies say -----


def test_what_each_server_says_is_read_from_its_own_field() -> None:
    props = {"default_generation_settings": {"n_ctx": 8192}, "total_slots": 1}
    assert served({"props": props}, "m") == ServedWindow(8192, None, "llama.cpp /props n_ctx")
    models = {"data": [{"id": "a", "max_model_len": 4096}, {"id": "m", "max_model_len": 16384}]}
    assert served({"models": models}, "m") == ServedWindow(
        16384, None, "vLLM /v1/models max_model_len"
    )
    one = {"data": [{"id": "model.gguf", "meta": {"n_ctx_train": 131072}}]}  # any name
    assert served({"models": one}, "m") == ServedWindow(
        None, 131072, "llama.cpp /v1/models n_ctx_train"
    )
    show = {
        "parameters": 'num_ctx                        8192\nstop "<|eot_id|>"',
        "model_info": {"general.architecture": "qwen2", "qwen2.context_length": 32768},
    }
    assert served({"show": show}, "m") == ServedWindow(8192, 32768, "Ollama /api/show num_ctx")
    ps = {"models": [{"name": "llama3:latest", "context_length": 4096}]}
    assert served({"ps": ps}, "llama3").tokens == 4096  # type: ignore[union-attr]
    assert served({"ps": ps}, "llama3:8b") is None  # another tag: another model


@pytest.mark.parametrize(
    "replies",
    [
        {},
        {"props": {"default_generation_settings": {"n_ctx": True}}},  # a bool is no count
        {"props": {"default_generation_settings": {"n_ctx": -1}}},
        {"props": ["not", "a", "dict"]},
        {"models": {"data": [{"id": "a", "max_model_len": 1}, {"id": "b"}]}},  # neither is m
        {"show": {"parameters": "num_ctx lots", "model_info": "?"}},
    ],
)
def test_a_reply_that_says_nothing_usable_is_no_figure(replies: dict[str, Any]) -> None:
    assert served(replies, "m") is None


# ----- who is asked -----


def connection(base_url: str | None, **fields: Any) -> Connection:
    return Connection(
        name="p",
        base_url=base_url,
        key_env=None,
        api_key="test-key",
        local=False,
        catalog=Catalog(),
        **fields,
    )


# The hosted presets' endpoints, from the catalog (no test names a hosted address itself).
HOSTED = [info.base_url for info in providers().values() if info.base_url and not info.local]


@pytest.mark.parametrize(
    ("base_url", "asked"),
    [
        (None, False),  # OpenAI's own API
        *((url, False) for url in HOSTED),
        ("http://127.0.0.1:8080/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://gpu-box.internal:8000/v1", True),
    ],
)
def test_only_a_server_of_the_users_is_asked(base_url: str | None, asked: bool) -> None:
    provider = OpenAIProvider(connection(base_url))
    assert provider._conn.users_server is asked
    if not asked:  # returns before making anything: no client, no session, no request
        assert asyncio.run(provider.served_window("m")) is None
        assert provider._lean is None


def test_an_anthropic_worker_is_never_asked() -> None:
    with FakeLLM([], serve_as="llama.cpp", window=8192) as fake:
        provider = AnthropicProvider(connection(fake.url))
        assert asyncio.run(provider.served_window("m")) is None
    assert fake.probes == []


def test_a_probe_is_sent_only_to_the_endpoints_own_origin() -> None:
    """The lean session carries the key in its headers: a URL on another host or port gets
    nothing sent."""
    with FakeLLM([]) as ours, FakeLLM([], serve_as="llama.cpp", window=8192) as other:

        async def probe() -> Any:
            lean = LeanHTTP(connection(ours.url + "/v1"), ours.url + "/v1", {"x": "y"})
            try:
                return await lean.probe("GET", other.url + "/props", None, 2.0)
            finally:
                await lean.close()

        assert asyncio.run(probe()) is None
    assert other.probes == []


# ----- end to end: rlm ask against the played servers -----

OVER = 30_000  # characters: over 8192 tokens' figure (24,576), under the default's
UNDER = 20_000
CELL = (
    f"big = llm_query('x' * {OVER})\n"
    f"small = llm_query('y' * {UNDER})\n"
    "print(big[:400])\nprint(small)"
)


def ask(fake: FakeLLM, *flags: str, worker_url: str | None = None) -> Any:
    """`rlm ask` with root and worker model `m` on `fake` (openai wire format), or the worker
    at `worker_url`; the root runs CELL, then answers."""
    where = ["--sub-base-url", worker_url, "--sub-model", "w"] if worker_url else []
    result = invoke_rlm(
        "ask", "--provider", "openai", "--base-url", f"{fake.url}/v1", "--model", "m", *where,
        "--no-cache", "-q", *flags, "q?", stdin=b"text", env={"OPENAI_API_KEY": fake.api_key},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return result


def told(fake: FakeLLM) -> int:
    """The per-prompt figure the root's system prompt states."""
    system = fake.requests[0]["body"]["messages"][0]
    assert system["role"] == "system"
    found = re.search(r"up to about ([\d,]+) characters", system["content"])
    assert found, system["content"][:2000]
    return int(found.group(1).replace(",", ""))


def sub_calls(fake: FakeLLM) -> list[int]:
    """The lengths of the sub-call prompts the fake received."""
    return [
        len(r["body"]["messages"][-1]["content"])
        for r in fake.requests
        if r["body"]["messages"][0]["role"] != "system"
    ]


def feedback(fake: FakeLLM) -> str:
    """The cell's output, as the root's second request carries it (sub-calls to the same
    server arrive in between)."""
    roots = [r for r in fake.requests if r["body"]["messages"][0]["role"] == "system"]
    return str(roots[1]["body"]["messages"][-1]["content"])


def test_against_llama_cpp_with_n_ctx_8192_the_prompt_and_the_guard_both_use_it() -> None:
    """Issue 12's acceptance: the figure the root is told derives from llama.cpp's n_ctx 8192,
    and a prompt over it is refused before sending (the server sees only the one under it)."""
    with FakeLLM([repl(CELL), repl("FINAL('done')")], serve_as="llama.cpp", window=8192) as fake:
        ask(fake)
    assert told(fake) == chars(8192) == 24_576
    assert sub_calls(fake) == [UNDER]  # the 30,000-character one never left
    out = feedback(fake)
    assert "Error: llm_query failed: " in out and "24,576" in out
    props = [p for p in fake.probes if p["path"] == "/props"]
    assert props and props[0]["headers"]["authorization"] == f"Bearer {fake.api_key}"


def test_without_the_server_figure_the_same_prompt_is_sent() -> None:
    """The same run against a server that says nothing: the default window admits both
    prompts, so it is the learned 8192 above that refused the big one."""
    with FakeLLM([repl(CELL), repl("FINAL('done')")]) as fake:
        ask(fake)
    assert told(fake) == chars(DEFAULT_WINDOW)
    assert sorted(sub_calls(fake)) == [UNDER, OVER]
    assert {p["path"] for p in fake.probes} >= {"/v1/models", "/props", "/api/show"}


def test_against_vllm_max_model_len_is_the_window() -> None:
    with FakeLLM(
        [repl(CELL), repl("FINAL('done')")], serve_as="vllm", window=6_000, models=("m",)
    ) as fake:
        ask(fake)
    assert told(fake) == chars(6_000)
    assert sub_calls(fake) == []  # 20,000 characters is over 6,000 tokens' figure too
    assert feedback(fake).count("Error: llm_query failed: ") == 2


@pytest.mark.parametrize(
    ("window", "loaded", "trained", "expected"),
    [
        (8_192, None, 131_072, chars(8_192)),  # num_ctx in the model file: what Ollama uses
        (None, 4_096, 131_072, chars(4_096)),  # no num_ctx, but loaded with 4,096
        (None, None, 16_384, chars(16_384)),  # only the trained length, below the default
        (None, None, 131_072, chars(DEFAULT_WINDOW)),  # above it: no figure
    ],
)
def test_against_ollama_num_ctx_then_the_loaded_context_then_a_ceiling(
    window: int | None, loaded: int | None, trained: int, expected: int
) -> None:
    with FakeLLM(
        [repl("FINAL('done')")],
        serve_as="ollama",
        models=("m",),  # /api/ps lists the loaded models by name
        window=window,
        loaded_window=loaded,
        trained_window=trained,
    ) as fake:
        ask(fake)
    assert told(fake) == expected
    (show,) = [p for p in fake.probes if p["path"] == "/api/show"]
    assert show["method"] == "POST" and show["body"] == {"model": "m"}


def test_a_server_that_says_nothing_leaves_sub_window_then_the_default() -> None:
    with FakeLLM([repl("FINAL('done')")], serve_as="vllm", window=None) as fake:
        ask(fake, "--sub-window", "16384")
    assert told(fake) == chars(16_384)
    with FakeLLM([repl("FINAL('done')")], serve_as="vllm", window=None) as fake:
        ask(fake)
    assert told(fake) == chars(DEFAULT_WINDOW)


def test_a_slow_server_is_not_waited_for() -> None:
    """A server that takes longer than the probe's time to say leaves the other figures; the
    run goes on without its replies (none had been written when the run ended)."""
    with FakeLLM(
        [repl("FINAL('done')")], serve_as="llama.cpp", window=8192, probe_delay_s=60
    ) as fake:
        ask(fake, "--sub-window", "16384")
        assert fake.probes and not any(p["answered"] for p in fake.probes)
    assert told(fake) == chars(16_384)


def test_a_worker_server_that_is_down_leaves_the_default() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with FakeLLM([repl("FINAL('done')")]) as fake:
        ask(fake, worker_url=f"http://127.0.0.1:{port}/v1")
    assert told(fake) == chars(DEFAULT_WINDOW)
    assert fake.probes == []  # the root's server is not the worker's: not asked

"""Honest outcomes on the provider side, end to end through the real `rlm ask` and the real
SDKs against the loopback FakeLLM made to behave like particular servers: the worker model on a
custom server, keys pasted where a variable's name goes, provider typos, usage a server does not
report, the reply-length parameter, --request-timeout on streams, 404s, and a server that takes
one request at a time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import read_trace, repl, run_rlm

from rlm_cli.bench.fake_llm import FakeLLM
from rlm_cli.errors import ProviderError
from rlm_cli.providers import connection
from rlm_cli.providers.base import Message, ModelRequest
from rlm_cli.providers.catalog import Catalog
from rlm_cli.providers.connection import Connection
from rlm_cli.providers.errors import from_status
from rlm_cli.providers.openai_provider import OpenAIProvider

# One sub-call, then its reply as the answer.
ONE_SUBCALL = [repl("r = llm_query('say hi')\nprint(r)"), repl("FINAL_VAR('r')")]
KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "LOCAL_KEY")


def ask(
    fake: FakeLLM,
    *args: str,
    provider: str = "openai",
    path: str = "/v1",
    env: dict[str, str | None] | None = None,
    stdin: bytes = b"some context",
) -> subprocess.CompletedProcess[bytes]:
    """`rlm ask --provider PROVIDER --base-url FAKE+PATH ARGS... question`, with the fake's key
    in every variable a provider may read (LOCAL_KEY for presets that have none)."""
    return run_rlm(
        "ask",
        "--provider",
        provider,
        "--base-url",
        fake.url + path,
        *args,
        "what does it say?",
        stdin=stdin,
        env={**{name: fake.api_key for name in KEY_VARS}, **(env or {})},
    )


def stderr_lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return proc.stderr.decode().splitlines()


# ----- case 2: the worker model on a server of the user's -----


@pytest.mark.slow
def test_a_custom_base_url_sends_sub_calls_to_the_root_model() -> None:
    # A server that serves only my-model: OpenAI's default worker (gpt-5-mini) is a 404 there.
    with FakeLLM(list(ONE_SUBCALL), lambda prompt: "hi", models=("my-model",)) as fake:
        proc = ask(fake, "--model", "my-model", "--no-cache", "--json")
        models = [r["body"]["model"] for r in fake.requests]
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "hi"
    assert data["subcalls"] == 1 and data["subcalls_failed"] == 0
    assert models == ["my-model"] * 3  # two root calls and the sub-call
    assert set(data["usage"]["by_model"]) == {"my-model"}
    header = stderr_lines(proc)[0]
    assert "root my-model" in header and "worker my-model" in header
    # A preset's server (here vLLM's, moved to the fake) likewise.
    with FakeLLM(list(ONE_SUBCALL), lambda prompt: "hi", models=("my-model",)) as fake:
        proc = ask(
            fake, "--model", "my-model", "--api-key-env", "LOCAL_KEY", "--no-cache",
            provider="vllm",
        )  # fmt: skip
        assert [r["body"]["model"] for r in fake.requests] == ["my-model"] * 3
    assert proc.returncode == 0, proc.stderr
    assert "worker my-model" in stderr_lines(proc)[0]


@pytest.mark.slow
def test_a_worker_model_the_server_does_not_serve_is_never_a_silent_success() -> None:
    with FakeLLM(list(ONE_SUBCALL), models=("my-model",)) as fake:
        proc = ask(fake, "--model", "my-model", "--sub-model", "other", "--no-cache")
        assert [r["body"]["model"] for r in fake.requests][1] == "other"
    header = stderr_lines(proc)[0]
    assert "root my-model" in header and "worker other" in header
    # The end of the run says so: an exit code, or a warning naming the model and the 404.
    warnings = [
        line
        for line in stderr_lines(proc)
        if line.startswith(("rlm: warning:", "rlm: error:")) and "other" in line and "404" in line
    ]
    assert proc.returncode != 0 or warnings, proc.stderr
    assert "other" in proc.stderr.decode() and "404" in proc.stderr.decode()


# ----- case 6: a key pasted where a variable's name goes -----

PASTED_KEY = "sk-abc123secret"


@pytest.mark.slow
def test_a_key_given_as_api_key_env_is_refused_and_never_echoed() -> None:
    with FakeLLM(list(ONE_SUBCALL)) as fake:
        plain = ask(fake, "--api-key-env", PASTED_KEY)
        as_json = ask(fake, "--api-key-env", PASTED_KEY, "--json")
        assert fake.requests == []  # refused before anything is sent
    for proc in (plain, as_json):
        assert proc.returncode == 3, proc.stderr
        assert PASTED_KEY.encode() not in proc.stdout + proc.stderr
        assert b"abc123secret" not in proc.stdout + proc.stderr
        assert b"--api-key-env takes the NAME of an environment variable" in proc.stderr
    data = json.loads(as_json.stdout)
    assert data["status"] == "error" and "not shown" in data["error"]


def test_a_key_given_as_api_key_env_never_reaches_the_trace(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    with FakeLLM(list(ONE_SUBCALL)) as fake:
        proc = ask(fake, "--api-key-env", PASTED_KEY, "--trace", str(trace))
    assert proc.returncode == 3, proc.stderr
    records = read_trace(trace)  # a run that never started leaves a trace too
    assert records[-1]["type"] == "run_finished" and records[-1]["status"] == "error"
    assert "abc123secret" not in trace.read_text()


# ----- case 7b: a provider's name mistyped -----


@pytest.mark.slow
def test_a_mistyped_provider_is_named_before_any_key_is_looked_up() -> None:
    no_keys: dict[str, str | None] = {name: None for name in KEY_VARS}
    proc = run_rlm("ask", "--provider", "opneai", "question", stdin=b"text", env=no_keys)
    assert proc.returncode == 3, proc.stderr
    assert "did you mean 'openai'" in proc.stderr.decode()
    assert "API key" not in proc.stderr.decode()
    proc = run_rlm(
        "ask", "--sub-provider", "antropic", "question", stdin=b"text", env=no_keys
    )  # the root's key (OPENAI_API_KEY, unset) would be looked up first
    assert proc.returncode == 3, proc.stderr
    assert "did you mean 'anthropic'" in proc.stderr.decode()
    assert "API key" not in proc.stderr.decode()


# ----- case 12: a server that reports no usage in streams -----


@pytest.mark.slow
def test_usage_a_server_does_not_report_is_estimated_and_marked(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    with FakeLLM(list(ONE_SUBCALL), stream_usage=False) as fake:
        proc = ask(fake, "--model", "m", "--json", "--trace", str(trace))
        server_count = fake.total_reported()  # what the server counted and did not send
    assert proc.returncode == 0, proc.stderr
    usage = json.loads(proc.stdout)["usage"]
    assert usage["estimated"] is True
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    # Counted offline, so not the server's figures, but of their size.
    assert (
        server_count["input_tokens"] / 3 < usage["input_tokens"] < server_count["input_tokens"] * 3
    )
    root = usage["by_depth"]["0"]
    assert root["estimated"] is True and root["input_tokens"] > 0 and root["output_tokens"] > 0
    assert usage["by_model"]["m"]["estimated"] is True
    finished = read_trace(trace)[-1]
    assert finished["type"] == "run_finished"
    assert finished["usage"]["estimated"] is True and finished["usage"]["input_tokens"] > 0
    with FakeLLM(list(ONE_SUBCALL), stream_usage=False) as fake:
        proc = ask(fake, "--model", "m", "--view", "plain")
    assert proc.returncode == 0, proc.stderr
    summary = [line for line in stderr_lines(proc) if line.startswith("rlm: finished ok")]
    assert len(summary) == 1 and "(estimated)" in summary[0] and " · ~" in summary[0]


@pytest.mark.slow
def test_max_tokens_stops_a_run_on_estimated_usage() -> None:
    root = [repl("r = llm_query('say hi')\nprint(r)")] * 3 + [repl("FINAL('done')")]
    with FakeLLM(root, stream_usage=False) as fake:
        proc = ask(fake, "--model", "m", "--max-tokens", "300", "--json")
    assert proc.returncode == 6, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "max_tokens"
    assert data["usage"]["estimated"] is True and data["usage"]["input_tokens"] > 300


@pytest.mark.slow
def test_a_local_preset_without_usage_costs_nothing_rather_than_unknown() -> None:
    with FakeLLM(list(ONE_SUBCALL), stream_usage=False) as fake:
        as_json = ask(fake, "--model", "m", "--api-key-env", "LOCAL_KEY", "--json",
                      provider="llamacpp")  # fmt: skip
    with FakeLLM(list(ONE_SUBCALL), stream_usage=False) as fake:
        plain = ask(fake, "--model", "m", "--api-key-env", "LOCAL_KEY", "--view", "plain",
                    provider="llamacpp")  # fmt: skip
    assert as_json.returncode == plain.returncode == 0, as_json.stderr + plain.stderr
    usage = json.loads(as_json.stdout)["usage"]
    assert usage["cost_usd"] == 0 and usage["estimated"] is True and usage["input_tokens"] > 0
    summary = [line for line in stderr_lines(plain) if line.startswith("rlm: finished ok")]
    assert len(summary) == 1 and "$0.00" in summary[0] and "cost unknown" not in summary[0]


# ----- case 13: the reply-length parameter a server honours -----


@pytest.mark.slow
def test_max_output_tokens_reaches_a_compatible_server_as_max_tokens() -> None:
    # llama.cpp honours max_tokens only (it ignores max_completion_tokens).
    with FakeLLM(
        list(ONE_SUBCALL), lambda prompt: "y" * 1000, max_tokens_param="max_tokens"
    ) as fake:
        proc = ask(fake, "--model", "m", "--max-output-tokens", "40", "--json", "--no-cache")
        bodies = [r["body"] for r in fake.requests]
    assert proc.returncode == 0, proc.stderr
    assert len(bodies) == 3
    assert all(b.get("max_tokens") == 40 and "max_completion_tokens" not in b for b in bodies)
    assert json.loads(proc.stdout)["answer"] == "y" * 160  # the sub-call's reply, cut at 40


def _connection(base_url: str | None, name: str = "openai", key: str = "k") -> Connection:
    return Connection(
        name=name, base_url=base_url, key_env=None, api_key=key, local=False, catalog=Catalog(),
        max_output_tokens=40,
    )  # fmt: skip


def _sent_body(name: str = "openai") -> dict[str, Any]:
    """The body the real SDK posts to a loopback server for one streamed call."""
    with FakeLLM(["ok"]) as fake:
        provider = OpenAIProvider(_connection(f"{fake.url}/v1", name, fake.api_key))
        request = ModelRequest(
            model="m", messages=(Message("system", "s"), Message("user", "hi")), purpose="root"
        )

        async def call() -> None:
            try:
                await provider.stream(request, lambda text: None)
            finally:
                await provider.aclose()

        asyncio.run(call())
        (sent,) = fake.requests
    body: dict[str, Any] = sent["body"]
    return body


def test_openai_itself_keeps_max_completion_tokens_and_others_get_max_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Decided by the URL, not by --provider: --provider openai --base-url is a compatible server.
    for name in ("openai", "openrouter"):
        body = _sent_body(name)
        assert body.get("max_tokens") == 40 and "max_completion_tokens" not in body
    with monkeypatch.context() as patch:  # the loopback server in OpenAI's place
        patch.setattr(connection, "OPENAI_HOST", "127.0.0.1")
        body = _sent_body()
    assert body.get("max_completion_tokens") == 40 and "max_tokens" not in body
    # No base URL at all is OpenAI's default endpoint (nothing is sent to find out).
    request = ModelRequest(model="m", messages=(Message("user", "hi"),), purpose="sub")
    params = OpenAIProvider(_connection(None))._params(request)
    assert params.get("max_completion_tokens") == 40 and "max_tokens" not in params


# ----- case 14: --request-timeout bounds a whole streamed reply -----


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_request_timeout_bounds_a_whole_stream(provider: str) -> None:
    # 40 deltas 0.3 s apart: every gap is well inside the timeout, the whole reply is 12 s.
    path = "/v1" if provider == "openai" else ""
    with FakeLLM(list(ONE_SUBCALL), chunk_delay_s=0.3, stream_pieces=40) as fake:
        started = time.monotonic()
        proc = ask(
            fake, "--model", "m", "--request-timeout", "1", "--max-retries", "1", "--json",
            provider=provider, path=path,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        root_requests = [r for r in fake.requests if r["body"].get("stream")]
    assert proc.returncode == 5, proc.stderr
    data = json.loads(proc.stdout)
    assert "timed out after 1 s" in data["error"] and "--request-timeout" in data["error"]
    assert "timed out after 1 s" in proc.stderr.decode()
    assert len(root_requests) == 1  # --max-retries 1: one attempt
    assert data["elapsed_s"] < 6 and elapsed < 11  # not the 12 s of the whole stream


@pytest.mark.slow
def test_a_timed_out_stream_is_retried() -> None:
    with FakeLLM(list(ONE_SUBCALL), chunk_delay_s=0.3, stream_pieces=40) as fake:
        proc = ask(fake, "--model", "m", "--request-timeout", "1", "--max-retries", "2")
        root_requests = [r for r in fake.requests if r["body"].get("stream")]
    assert proc.returncode == 5, proc.stderr
    assert len(root_requests) == 2
    assert "retry 1 of a root call" in proc.stderr.decode()
    assert "failed after 2 attempt(s)" in proc.stderr.decode()


# ----- case 15: a 404 from a wrong URL, and one from an unknown model -----


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_wrong_base_url_is_told_from_an_unknown_model(provider: str) -> None:
    served = "/v1/chat/completions" if provider == "openai" else "/v1/messages"
    with FakeLLM(list(ONE_SUBCALL), paths=(served,)) as fake:
        proc = ask(fake, "--model", "m", "--max-retries", "1", "--json", provider=provider,
                   path="/wrong")  # fmt: skip
        asked = fake.url + fake.requests[0]["path"]
    assert proc.returncode == 5, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert f"no API at this URL ({asked})" in error
    assert "HTTP 404: File Not Found;" in error  # the server's own words, once
    assert "check --base-url" in error and "unknown model" not in error
    if provider == "anthropic":  # its SDK adds /v1/messages: "ends in /v1" would mislead
        assert "leave /v1 off" in error
    else:
        assert "ends in /v1" in error
    assert "no API at this URL" in proc.stderr.decode()
    # The right URL and a model the server does not serve: still an unknown model.
    with FakeLLM(list(ONE_SUBCALL), models=("m",)) as fake:
        proc = ask(fake, "--model", "nope", "--max-retries", "1", "--json", provider=provider,
                   path="/v1" if provider == "openai" else "")  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert "unknown model 'nope'" in error and "The model `nope` does not exist." in error
    assert "no API at this URL" not in error


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"detail": "Not Found"}, "Not Found"),  # vLLM (FastAPI)
        ("404 page not found", "404 page not found"),  # Ollama
        ("<html><body><h1>Not Found</h1></body></html>", "Not Found"),  # a proxy's page
        ({"error": {"code": 404, "message": "File Not Found"}}, "File Not Found"),  # llama.cpp
    ],
)
def test_a_404_without_a_model_keeps_the_server_words(body: object, said: str) -> None:
    conn = Connection("vllm", "http://localhost:8000", None, None, True, Catalog())
    # A model called "o": the "o" of "Not Found" does not name it. No URL: the base URL is named.
    error = from_status(conn, "o", 404, body, None)
    assert isinstance(error, ProviderError)
    assert str(error).startswith("vllm: no API at this URL (http://localhost:8000)")
    assert f"HTTP 404: {said}; check --base-url" in str(error)


# ----- case 16: a server that takes one request at a time -----

CHILDREN = [
    repl("r = rlm_query_batched(['a', 'b', 'c'])\nprint(r)"),
    *[repl("FINAL('child')")] * 3,
    repl("FINAL_VAR('r')"),
]


@pytest.mark.slow
def test_child_runs_on_a_one_slot_server_do_not_cut_each_other() -> None:
    def run(provider: str) -> tuple[subprocess.CompletedProcess[bytes], int]:
        # llama.cpp's default: one slot; a request arriving cuts the stream being written.
        with FakeLLM(list(CHILDREN), parallel=1, chunk_delay_s=0.05, stream_pieces=8) as fake:
            proc = ask(
                fake, "--model", "m", "--api-key-env", "LOCAL_KEY", "--max-depth", "2",
                "--max-retries", "2", "--json", provider=provider,
            )  # fmt: skip
            return proc, fake.cut_streams

    # The fake does cut: three child roots streaming at once, with no limit of the provider's.
    _, cut = run("openai")
    assert cut > 0
    # The llamacpp preset sends one request at a time, root streams and sub-calls alike.
    proc, cut = run("llamacpp")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert cut == 0
    assert data["answer"] == str(["child"] * 3)
    assert data["subcalls_failed"] == 0 and "retry" not in proc.stderr.decode()
    assert data["usage"]["by_depth"]["1"]["calls"] == 3

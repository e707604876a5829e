"""The OpenAI and Anthropic providers, through the real SDKs, against a loopback server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import read_trace, repl, run_rlm

from rlm_cli.bench.fake_llm import FakeLLM, Fault

HAYSTACK = b"alpha\nbeta\nthe code is 42\ngamma\n"
ROOT = [
    repl(
        "parts = [p for p in context.splitlines() if p]\n"
        "replies = llm_query_batched([f'Find the code in: {p}' for p in parts])\nprint(replies)",
        "Let me ask the worker about each line.",
    ),
    repl("result = [r for r in replies if r != 'none'][0]\nFINAL_VAR('result')"),
]


def find_code(prompt: str) -> str:
    match = re.search(r"code is (\d+)", prompt)
    return match.group(1) if match else "none"


def ask(
    fake: FakeLLM, provider: str, *extra: str, key: str = "test-key", stdin: bytes = HAYSTACK
) -> Any:
    base = fake.url + ("/v1" if provider == "openai" else "")
    env_var = "OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY"
    return run_rlm(
        "ask",
        "--provider",
        provider,
        "--base-url",
        base,
        "--json",
        *extra,
        "what is the code?",
        stdin=stdin,
        env={env_var: key},
    )


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_answers_with_exact_usage(provider: str) -> None:
    with FakeLLM(list(ROOT), find_code, cached_tokens=64) as fake:
        proc = ask(fake, provider, "--model", "root-x", "--sub-model", "worker-y")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "42"
    usage, reported = data["usage"], fake.total_reported()
    assert usage["input_tokens"] == reported["input_tokens"]
    assert usage["output_tokens"] == reported["output_tokens"]
    assert usage["cached_input_tokens"] == reported["cached_input_tokens"] == 64
    assert usage["by_model"]["root-x"]["calls"] == 2
    assert usage["by_model"]["worker-y"]["calls"] == 4
    assert usage["cost_usd"] is None  # unknown models: unknown cost, never 0
    root_requests = [r for r in fake.requests if r["body"]["model"] == "root-x"]
    assert all(r["body"].get("stream") for r in root_requests)  # the root streams


@pytest.mark.slow
def test_anthropic_marks_cache_breakpoints_on_root_calls_only() -> None:
    with FakeLLM(list(ROOT), find_code) as fake:
        proc = ask(fake, "anthropic", "--model", "root-x", "--sub-model", "worker-y")
    assert proc.returncode == 0, proc.stderr
    root = [r["body"] for r in fake.requests if r["body"]["model"] == "root-x"]
    sub = [r["body"] for r in fake.requests if r["body"]["model"] == "worker-y"]
    for body in root:
        assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert all("cache_control" not in json.dumps(body) for body in sub)


@pytest.mark.slow
def test_openai_message_prefix_is_stable_across_iterations() -> None:
    with FakeLLM(list(ROOT), find_code) as fake:
        ask(fake, "openai", "--model", "root-x", "--sub-model", "worker-y")
    first, second = [r["body"]["messages"] for r in fake.requests if r["body"]["model"] == "root-x"]
    assert second[: len(first)] == first


@pytest.mark.slow
def test_cost_follows_the_price_table() -> None:
    with FakeLLM(list(ROOT), find_code, cached_tokens=64) as fake:
        proc = ask(fake, "openai", "--model", "gpt-5", "--sub-model", "gpt-5-nano")
    data = json.loads(proc.stdout)
    by_model = data["usage"]["by_model"]
    root, worker = by_model["gpt-5"], by_model["gpt-5-nano"]
    expected_root = (
        (root["input_tokens"] - root["cached_input_tokens"]) * 1.25
        + root["cached_input_tokens"] * 0.125
        + root["output_tokens"] * 10.0
    ) / 1e6
    expected_worker = (worker["input_tokens"] * 0.05 + worker["output_tokens"] * 0.40) / 1e6
    assert root["cost_usd"] == pytest.approx(expected_root)
    assert worker["cost_usd"] == pytest.approx(expected_worker)
    assert data["usage"]["cost_usd"] == pytest.approx(expected_root + expected_worker)


@pytest.mark.slow
def test_a_user_price_file_overrides_the_table(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "models:\n  root-x: {input: 1.0, output: 2.0}\n  worker-y: {input: 0, output: 0}\n"
    )
    with FakeLLM(list(ROOT), find_code) as fake:
        proc = ask(
            fake, "openai", "--model", "root-x", "--sub-model", "worker-y", "--prices", str(prices)
        )
    root = json.loads(proc.stdout)["usage"]["by_model"]["root-x"]
    assert root["cost_usd"] == pytest.approx(
        (root["input_tokens"] + 2 * root["output_tokens"]) / 1e6
    )


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_three_429s_then_success_are_counted_once(provider: str, tmp_path: Path) -> None:
    faults = [Fault("status", 429, headers={"retry-after": "0"}) for _ in range(3)]
    trace = tmp_path / "t.jsonl"
    with FakeLLM(list(ROOT), find_code, faults=faults) as fake:
        proc = ask(fake, provider, "--model", "r", "--sub-model", "w", "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "42"
    assert len(fake.requests) == len(fake.reported) + 3
    assert data["usage"]["input_tokens"] == fake.total_reported()["input_tokens"]
    assert data["usage"]["by_model"]["r"]["calls"] == 2
    retries = [r for r in read_trace(trace) if r["type"] == "retry"]
    assert len(retries) == 3 and all(r["delay_s"] == 0 for r in retries)


@pytest.mark.slow
def test_server_errors_are_retried_then_exit_5() -> None:
    faults = [Fault("status", 500, target="root") for _ in range(3)]
    with FakeLLM(list(ROOT), find_code, faults=faults) as fake:
        proc = ask(fake, "openai", "--model", "r", "--max-retries", "3")
    assert proc.returncode == 5
    assert b"failed after 3 attempt(s)" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "error"


@pytest.mark.slow
def test_a_timeout_is_retried() -> None:
    faults = [Fault("delay", delay_s=3.0, target="root")]
    with FakeLLM(list(ROOT), find_code, faults=faults) as fake:
        proc = ask(fake, "openai", "--model", "r", "--sub-model", "w", "--request-timeout", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "42"


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_cut_in_the_middle_is_retried(provider: str) -> None:
    with FakeLLM(list(ROOT), find_code, faults=[Fault("cut", target="root")]) as fake:
        proc = ask(fake, provider, "--model", "r", "--sub-model", "w")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "42"
    assert json.loads(proc.stdout)["usage"]["input_tokens"] == fake.total_reported()["input_tokens"]


@pytest.mark.slow
def test_malformed_json_is_retried() -> None:
    with FakeLLM(list(ROOT), find_code, faults=[Fault("malformed", target="sub")]) as fake:
        proc = ask(fake, "openai", "--model", "r", "--sub-model", "w")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "42"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("provider", "variable"), [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")]
)
def test_a_bad_key_exits_4_and_never_shows_the_key(
    provider: str, variable: str, tmp_path: Path
) -> None:
    secret = "sk-bad-SECRET-1234567890"
    trace = tmp_path / "t.jsonl"
    with FakeLLM(list(ROOT), find_code) as fake:
        proc = ask(fake, provider, "-q", "--model", "r", "--trace", str(trace), key=secret)
    assert proc.returncode == 4
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]
    for output in (proc.stdout, proc.stderr, trace.read_bytes()):
        assert secret.encode() not in output


@pytest.mark.slow
def test_a_missing_key_exits_4_naming_the_variable() -> None:
    proc = run_rlm("ask", "--provider", "openai", "q?", stdin=b"x", env={"OPENAI_API_KEY": ""})
    assert proc.returncode == 4
    assert b"OPENAI_API_KEY" in proc.stderr


@pytest.mark.slow
def test_context_length_on_a_sub_call_is_an_error_string_for_the_code() -> None:
    body = {
        "error": {
            "message": "This model's maximum context length is 10 tokens",
            "code": "context_length_exceeded",
        }
    }
    root = [
        repl("r = llm_query('a very long prompt')\nprint(r)"),
        repl("FINAL('recovered: ' + r[:40])"),
    ]
    with FakeLLM(root, find_code, faults=[Fault("status", 400, body=body, target="sub")]) as fake:
        proc = ask(fake, "openai", "--model", "r", "--sub-model", "w")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"].startswith("recovered: Error: llm_query failed")


@pytest.mark.slow
def test_context_length_on_the_root_ends_the_run_clearly() -> None:
    body = {
        "error": {"message": "maximum context length exceeded", "code": "context_length_exceeded"}
    }
    with FakeLLM(
        list(ROOT), find_code, faults=[Fault("status", 400, body=body, target="root")]
    ) as fake:
        proc = ask(fake, "openai", "--model", "r")
    assert proc.returncode == 5
    assert b"the prompt is too long for r" in proc.stderr


@pytest.mark.slow
def test_an_unknown_model_names_the_model_and_provider() -> None:
    body = {"error": {"message": "The model `nope` does not exist", "code": "model_not_found"}}
    with FakeLLM(list(ROOT), find_code, faults=[Fault("status", 404, body=body)]) as fake:
        proc = ask(fake, "openai", "--model", "nope")
    assert proc.returncode == 5
    assert b"openai: unknown model 'nope'" in proc.stderr


@pytest.mark.slow
def test_a_sub_call_too_big_for_the_worker_is_refused_before_sending(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  tiny: {window: 1000, max_output: 100}\n")
    root = [repl("r = llm_query('x' * 50_000)\nprint(r)"), repl("FINAL(r)")]
    with FakeLLM(root, find_code) as fake:
        proc = ask(fake, "openai", "--model", "r", "--sub-model", "tiny", "--prices", str(prices))
    assert proc.returncode == 0, proc.stderr
    assert "50,000 characters" in json.loads(proc.stdout)["answer"]
    assert not [r for r in fake.requests if r["body"]["model"] == "tiny"]


def tsv(stdout: bytes) -> list[dict[str, str]]:
    """Rows printed into a pipe: a header line, then tab-separated cells."""
    header, *rows = stdout.decode().splitlines()
    return [dict(zip(header.split("\t"), row.split("\t"), strict=True)) for row in rows]


@pytest.mark.slow
def test_models_and_providers_commands() -> None:
    proc = run_rlm("models")
    assert proc.returncode == 0
    rows = {row["model"]: row for row in tsv(proc.stdout)}
    assert rows["gpt-5-mini"]["input_limit"] == "272000" and "claude-sonnet-4-5" in rows
    as_json = {entry["model"]: entry for entry in json.loads(run_rlm("models", "--json").stdout)}
    assert as_json["gpt-5-mini"]["input_usd"] == float(rows["gpt-5-mini"]["input_usd"])
    proc = run_rlm("providers", env={"OPENAI_API_KEY": "sk-visible-NOT"})
    assert proc.returncode == 0
    rows = {row["provider"]: row for row in tsv(proc.stdout)}
    assert rows["ollama"]["base_url"] == "http://localhost:11434/v1"
    assert rows["openai"]["key_env"] == "OPENAI_API_KEY" and rows["openai"]["key"] == "set"
    assert b"sk-visible-NOT" not in proc.stdout
    proc = run_rlm("providers", "--json", env={"OPENAI_API_KEY": "sk-visible-NOT"})
    assert b"sk-visible-NOT" not in proc.stdout
    entries = {entry["provider"]: entry for entry in json.loads(proc.stdout)}
    assert entries["openai"]["key"] == "set" and entries["ollama"]["local"] is True


@pytest.mark.slow
def test_local_preset_needs_a_model_name() -> None:
    proc = run_rlm("ask", "--provider", "ollama", "q?", stdin=b"x")
    assert proc.returncode == 3
    assert b"--model" in proc.stderr


def test_sub_calls_follow_the_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_cli.providers.connection import proxy_for

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    assert proxy_for("https://api.example.com/v1") == "http://proxy.internal:3128"
    assert proxy_for("http://127.0.0.1:8000/v1") is None

"""Sub-calls at scale: the cache, child runs, budgets and accounting, end to end through the CLI
and the real OpenAI SDK against the loopback server. The CLI runs in process (conftest's
invoke_rlm: the SDKs' imports cost a second a process); the worker is still a real process."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke_rlm, read_trace, repl, run_rlm

from rlm_cli.bench.fake_llm import FakeLLM
from rlm_cli.engine.router import AdaptiveLimit

ASK = ("ask", "--provider", "openai", "--model", "r", "--sub-model", "w", "--json", "-q")


def ask(fake: FakeLLM, *extra: str, stdin: bytes = b"the code is 42") -> Any:
    return invoke_rlm(
        *ASK, "--base-url", f"{fake.url}/v1", *extra, "q?",
        stdin=stdin, env={"OPENAI_API_KEY": fake.api_key},
    )  # fmt: skip


def sub_requests(fake: FakeLLM) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["body"]["messages"][0]["role"] != "system"]


def test_a_second_identical_run_sends_no_sub_calls() -> None:
    root = [repl("r = llm_query_batched([f'item {i}' for i in range(20)])\nFINAL(r[7])")]
    with FakeLLM(root * 2, lambda prompt: prompt.upper()) as fake:
        first = ask(fake)
        sent = len(sub_requests(fake))
        second = ask(fake)
        assert len(sub_requests(fake)) == sent == 20  # the second run asked the server nothing
    assert first.exit_code == second.exit_code == 0, second.stderr
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["answer"] == two["answer"] == "ITEM 7"
    assert two["usage"]["cache_hits"] == 20 and one["usage"]["cache_hits"] == 0
    assert two["usage"]["by_model"].get("w") is None  # hits report no usage and cost nothing
    with FakeLLM(root, lambda prompt: prompt.upper()) as fake:
        ask(fake, "--no-cache")
        assert len(sub_requests(fake)) == 20


def test_a_child_run_counts_in_the_parent_totals(tmp_path: Path) -> None:
    root = [
        repl(
            "r = rlm_query('What is the code?', context='noise\\nthe code is 42\\nnoise')\nprint(r)"
        ),
        repl("line = [l for l in context.splitlines() if 'code' in l][0]\nFINAL(llm_query(line))"),
        repl("FINAL('child said: ' + r)"),
    ]
    trace = tmp_path / "t.jsonl"
    with FakeLLM(root, lambda prompt: "42" if "42" in prompt else "none") as fake:
        proc = ask(fake, "--max-depth", "2", "--trace", str(trace))
    assert proc.exit_code == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "child said: 42"
    usage, reported = data["usage"], fake.total_reported()
    assert usage["input_tokens"] == reported["input_tokens"]
    assert usage["output_tokens"] == reported["output_tokens"]
    assert set(usage["by_depth"]) == {"0", "1", "2"}  # root; child root; child's sub-call
    assert usage["by_depth"]["0"]["calls"] == 2 and usage["by_depth"]["2"]["calls"] == 1
    started = [r for r in read_trace(trace) if r["type"] == "run_started"]
    assert [r["depth"] for r in started] == [0, 1]
    assert started[1]["parent_run_id"] == started[0]["run_id"] and started[1]["parent_cell"] == 1
    shown = invoke_rlm("trace", "show", str(trace), env={"COLUMNS": "140"})
    assert "child run" in shown.stdout and "depth 1" in shown.stdout


def test_at_the_depth_limit_rlm_query_is_a_plain_llm_query(tmp_path: Path) -> None:
    root = [repl("FINAL(rlm_query('Find the code', context='the code is 7'))")]
    trace = tmp_path / "t.jsonl"
    with FakeLLM(root, lambda prompt: "7" if "code is 7" in prompt else "none") as fake:
        proc = ask(fake, "--trace", str(trace))
    assert json.loads(proc.stdout)["answer"] == "7"
    started = [r for r in read_trace(trace) if r["type"] == "subcall_started"]
    assert [r["kind"] for r in started] == ["rlm_fallback"]


def test_max_cost_stops_with_a_best_effort_answer(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        # A small max output: each call's bound (prompt + max output at the price) fits the cap.
        "models:\n  r: {input: 1.0, output: 1.0}\n  w: {input: 100.0, output: 100.0, max_output: 20}\n"
    )
    root = [
        repl("replies = llm_query_batched([f'item {i}' for i in range(300)])"),
        "The budget is gone.\nFINAL(partial answer)",
    ]
    trace = tmp_path / "t.jsonl"
    with FakeLLM(root, latency_s=0.01) as fake:
        proc = ask(
            fake, "--prices", str(prices), "--max-cost", "0.1", "--max-concurrency", "4",
            "--trace", str(trace),
        )  # fmt: skip
        sent = len(sub_requests(fake))
    assert proc.exit_code == 6, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "max_cost" and data["answer"] == "partial answer"
    assert sent < 300
    records = read_trace(trace)
    last_root = [r for r in records if r["type"] == "root_reply"][-1]
    assert data["usage"]["cost_usd"] <= 0.1 + last_root["cost_usd"]
    assert any(r["type"] == "budget_warning" and r["limit"] == "max_cost" for r in records)


@pytest.mark.slow
def test_timeout_stops_the_whole_run_in_time(tmp_path: Path) -> None:
    root = [
        repl("replies = llm_query_batched([f'item {i}' for i in range(200)])"),
        repl("FINAL('what I have')"),
    ]
    with FakeLLM(root, latency_s=0.3) as fake:
        started = time.monotonic()
        # A real process: it must exit in time too, with requests still in flight. 3 s (30 s
        # of work at this concurrency) keeps 0.9 s back for the last turn's 0.3 s call.
        proc = run_rlm(
            *ASK, "--base-url", f"{fake.url}/v1", "--timeout", "3", "--max-concurrency", "2",
            "q?", stdin=b"the code is 42", env={"OPENAI_API_KEY": fake.api_key},
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert proc.returncode == 6, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "timeout" and data["answer"] == "what I have"
    assert data["elapsed_s"] <= 3.5
    assert elapsed < 15  # the process too, start-up included


def test_a_fan_out_over_max_subcalls_fails_before_spending() -> None:
    root = [
        repl("try:\n    llm_query_batched(['a'] * 50)\nexcept RuntimeError as e:\n    print(e)"),
        repl("FINAL(llm_query('one more'))"),
    ]
    with FakeLLM(root) as fake:
        proc = ask(fake, "--max-subcalls", "10")
        assert len(sub_requests(fake)) == 1
    # The refused fan-out cut the run's work: its status names the budget, even after a FINAL.
    assert proc.exit_code == 6, proc.stderr
    assert json.loads(proc.stdout)["status"] == "max_subcalls"
    requests = [r for r in fake.requests if r["body"]["messages"][0]["role"] == "system"]
    feedback = requests[1]["body"]["messages"][-1]["content"]
    assert "would overrun --max-subcalls 10" in feedback


def test_adaptive_limit_halves_on_rate_limits_and_grows_back() -> None:
    async def scenario() -> list[int]:
        limit = AdaptiveLimit(8)
        seen = [limit.limit]
        limit.rate_limited()
        limit.rate_limited()
        seen.append(limit.limit)
        for _ in range(2 + 3):  # 2 successes at limit 2 make it 3; 3 more make it 4
            limit.succeeded()
        seen.append(limit.limit)
        in_flight = 0
        peak = 0

        async def task() -> None:
            nonlocal in_flight, peak
            async with limit:
                in_flight += 1
                peak = max(peak, in_flight)
                await asyncio.sleep(0.01)
                in_flight -= 1

        await asyncio.gather(*(task() for _ in range(20)))
        seen.append(peak)
        return seen

    assert asyncio.run(scenario()) == [8, 2, 4, 4]


def test_429s_slow_the_fan_out_down() -> None:
    from rlm_cli.bench.fake_llm import Fault

    faults = [Fault("status", 429, headers={"retry-after": "0"}, target="sub") for _ in range(6)]
    root = [repl("r = llm_query_batched([f'i{n}' for n in range(30)])\nFINAL(len(r))")]
    with FakeLLM(root, faults=faults) as fake:
        proc = ask(fake, "--max-concurrency", "16")
    assert proc.exit_code == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "30"
    assert data["usage"]["by_model"]["w"]["calls"] == 30  # retried calls counted once


def test_children_of_children_do_not_deadlock_and_are_counted() -> None:
    # Four depth-1 children at once, each starting a depth-2 child (which, at the limit, asks a
    # plain llm_query): every slot is held by a parent waiting for its own child.
    child = repl("FINAL(rlm_query('go deeper', context='leaf'))")
    root = [repl("r = rlm_query_batched(['a', 'b', 'c', 'd'])"), *[child] * 8, repl("FINAL(r)")]
    with FakeLLM(root) as fake:
        started = time.monotonic()
        proc = ask(fake, "--max-depth", "3", "--cell-timeout", "60")
        elapsed = time.monotonic() - started
    assert proc.exit_code == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == str(["ok"] * 4)
    assert elapsed < 30
    assert data["usage"]["input_tokens"] == fake.total_reported()["input_tokens"]
    assert (
        data["usage"]["by_depth"]["1"]["calls"] == 4
        and data["usage"]["by_depth"]["2"]["calls"] == 4
    )

"""A cell's time limit bounds its own compute, not its waits on sub-calls; a cell stopped with
sub-calls in flight keeps the replies that came back, and says how many it lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke_rlm, read_trace, repl
from test_sandbox import with_sandbox

from rlm_cli import inputs as rlm_inputs
from rlm_cli.bench.fake_llm import FakeLLM
from rlm_cli.sandbox.clock import CellClock
from rlm_cli.sandbox.host import CellResult, QueryRequest, Sandbox


def test_the_clock_stops_while_any_sub_call_is_in_flight() -> None:
    async def body() -> None:
        clock = CellClock(10)
        clock.hold()
        clock.hold()
        assert clock.left() is None and clock.waiting
        await asyncio.sleep(0.2)
        clock.release()
        assert clock.left() is None  # one call is still out
        clock.release()
        left = clock.left()
        assert left is not None and left > 9.9  # the 0.2 s of waiting did not count
        assert clock.waited() >= 0.2

    asyncio.run(body())


def test_sequential_sub_calls_longer_than_the_limit_do_not_stop_the_cell() -> None:
    async def slow(request: QueryRequest) -> list[str]:
        await asyncio.sleep(0.6)
        return ["ok"] * len(request.prompts)

    async def body(sandbox: Sandbox) -> CellResult:
        return await sandbox.execute("r = [llm_query(str(i)) for i in range(4)]\nprint(r)", 1)

    result = with_sandbox(rlm_inputs.from_value("c"), body, on_query=slow)
    assert not result.timed_out and not result.error, result.output
    assert result.output.strip() == "['ok', 'ok', 'ok', 'ok']"
    assert result.waited_s >= 2.4


def test_compute_between_sub_calls_still_adds_up_to_the_limit() -> None:
    """The clock pauses, it does not restart: 0.7 s of spinning, a sub-call, 0.7 s more is
    past a 1 s limit."""

    async def quick(request: QueryRequest) -> list[str]:
        return ["ok"] * len(request.prompts)

    spin = "import time\nend = time.monotonic() + 0.7\nwhile time.monotonic() < end: pass\n"

    async def body(sandbox: Sandbox) -> CellResult:
        return await sandbox.execute(f"{spin}llm_query('x')\n{spin}print('finished')", 1)

    result = with_sandbox(rlm_inputs.from_value("c"), body, on_query=quick)
    assert result.timed_out and "finished" not in result.output
    assert "limit on a cell's own time" in result.output


def test_the_run_deadline_still_stops_a_cell_waiting_on_a_sub_call() -> None:
    async def never(request: QueryRequest) -> list[str]:
        await asyncio.sleep(60)
        return ["late"]

    async def body(sandbox: Sandbox) -> CellResult:
        return await sandbox.execute("llm_query('slow')", 30, deadline=1)

    result = with_sandbox(rlm_inputs.from_value("c"), body, on_query=never)
    assert result.timed_out and not result.restarted
    assert "the run's time limit" in result.output


def fan_out(tmp_path: Path, worker: FakeLLM, root: list[str], *flags: str) -> tuple[Any, Path]:
    """`rlm ask` with a scripted root and the worker on `worker`, tracing to t.jsonl."""
    script = tmp_path / "s.yaml"
    import yaml

    script.write_text(yaml.safe_dump({"root": root}))
    trace = tmp_path / "t.jsonl"
    result = invoke_rlm(
        "ask", "--provider", "scripted", "--script", str(script),
        "--sub-provider", "openai", "--sub-base-url", f"{worker.url}/v1", "--sub-model", "w",
        "--no-cache", "--trace", str(trace), "--json", "-q", *flags, "q?",
        stdin=b"text", env={"OPENAI_API_KEY": worker.api_key},
    )  # fmt: skip
    return result, trace


FAN_OUT = "results = llm_query_batched([f'item {i}' for i in range(40)])"
COUNT = "FINAL(f\"{sum(not r.startswith('Error') for r in results)} of {len(results)}\")"


@pytest.mark.slow
def test_a_fan_out_longer_than_the_cell_limit_completes_and_a_spin_is_still_stopped(
    tmp_path: Path,
) -> None:
    """Issue 12's acceptance: 40 sub-calls at 1 s each, 5 at a time (8 s), under
    --cell-timeout 5, all come back; then a cell spinning in pure Python is stopped."""
    with FakeLLM([], latency_s=1.0) as worker:
        result, trace = fan_out(
            tmp_path, worker, [repl(FAN_OUT), repl("while True: pass"), repl(COUNT)],
            "--cell-timeout", "5", "--max-concurrency", "5",
        )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert '"answer": "40 of 40"' in result.stdout
    cells = [e for e in read_trace(trace) if e["type"] == "cell_finished"]
    assert [cell["timed_out"] for cell in cells] == [False, True, False]
    assert cells[0]["elapsed_s"] > 5  # it did outlast the cell limit


@pytest.mark.slow
def test_a_cell_stopped_mid_fan_out_keeps_the_replies_that_came_back(tmp_path: Path) -> None:
    """The run's --timeout stops the fan-out part way: the list the call returns holds the
    replies already back and error strings for the rest, and the feedback says how many."""
    with FakeLLM([], latency_s=1.0) as worker:
        result, trace = fan_out(
            tmp_path, worker, [repl(FAN_OUT), repl(COUNT)],
            "--timeout", "6", "--max-concurrency", "5",
        )  # fmt: skip
    assert result.exit_code == 6, result.stderr  # a limit stopped it: not ok, whatever it kept
    events = read_trace(trace)
    answer = next(e for e in events if e["type"] == "final_answer")["answer"]
    kept, total = int(answer.split()[0]), int(answer.split()[-1])
    assert total == 40 and 5 <= kept < 40
    stopped = next(e for e in events if e["type"] == "cell_finished")
    assert stopped["timed_out"]
    assert f"{40 - kept} of the 40 sub-calls in flight had not replied" in stopped["output"]
    assert f"The {kept} replies that had come back are kept" in stopped["output"]
    finished = next(e for e in events if e["type"] == "run_finished")
    assert finished["status"] == "timeout"


def test_each_cell_that_made_sub_calls_ends_with_one_summary_line(tmp_path: Path) -> None:
    with FakeLLM([]) as worker:
        root = FakeLLM(
            [
                repl("r = llm_query_batched(['a', 'b', 'c'])"),
                repl("x = 1"),
                repl("FINAL('done')"),
            ]
        )
        with root:
            result = invoke_rlm(
                "ask", "--provider", "openai", "--base-url", f"{root.url}/v1", "--model", "r",
                "--sub-base-url", f"{worker.url}/v1", "--sub-model", "w", "--no-cache", "-q",
                "q?", stdin=b"text", env={"OPENAI_API_KEY": worker.api_key},
            )  # fmt: skip
            assert result.exit_code == 0, result.stderr
            feedback = [
                request["body"]["messages"][-1]["content"]
                for request in root.requests
                if request["body"] and len(request["body"]["messages"]) > 2
            ]
    assert "[3 sub-calls · w · " in feedback[0] and " s waiting · 0 failed]" in feedback[0]
    assert "sub-call" not in feedback[1].split("[Iteration")[0]  # no calls, no line

"""Honest outcomes: budgets that refuse on facts, and failed sub-calls that reach the status, the
summary, the result, the trace and the tree's marks."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import ask_scripted, read_trace, repl, run_rlm
from rich.console import Console

from rlm_cli import RLM
from rlm_cli.bench.fake_llm import FakeLLM, Fault
from rlm_cli.engine.budget import Bound, Budget, Limits
from rlm_cli.events import (
    CellFinished,
    CellStarted,
    EventBus,
    IterationStarted,
    RootReply,
    RunFinished,
    RunStarted,
    SubcallFinished,
    SubcallStarted,
)
from rlm_cli.providers.base import Usage
from rlm_cli.providers.scripted import ScriptedProvider
from rlm_cli.trace.export import export_html
from rlm_cli.trace.reader import load_trace, trajectory
from rlm_cli.ui.model import RunTree
from rlm_cli.ui.tree import render

# ----- helpers -----


def ask(fake: FakeLLM, *extra: str, stdin: bytes = b"the code is 42") -> Any:
    return run_rlm(
        "ask", "--provider", "openai", "--base-url", f"{fake.url}/v1", "--model", "r",
        "--sub-model", "w", *extra, "q?",
        stdin=stdin, env={"OPENAI_API_KEY": fake.api_key},
    )  # fmt: skip


def sub_requests(fake: FakeLLM) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["body"]["messages"][0]["role"] != "system"]


def root_requests(fake: FakeLLM) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r["body"]["messages"][0]["role"] == "system"]


def finished(trace: Path) -> list[dict[str, Any]]:
    return [r for r in read_trace(trace) if r["type"] == "run_finished"]


def draw(run: RunTree, **options: Any) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None, record=True)
    console.print(render(run, now=1000.5, **options))
    return console.export_text()


# ----- case 1: budgets that refuse on facts -----

# The fake server counts a sub-call's input as its JSON messages over four, plus one, and its
# output as the reply over four, plus one: "item 000" is 11 input tokens, a 96-character reply
# 25 output tokens, so 36 tokens; at $100 per million, $0.0036 a call. The catalog says the
# worker's replies are at most 25 tokens: a call's bound is its prompt plus 25 tokens.
SUB_COST = 36 * 100 / 1_000_000


@pytest.mark.slow
def test_a_fan_out_is_sent_while_it_fits_and_the_refusals_name_the_budget(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "models:\n  r: {input: 1.0, output: 1.0}\n"
        "  w: {input: 100.0, output: 100.0, max_output: 25}\n"
    )
    root = [
        repl(
            "r = llm_query_batched([f'item {i:03d}' for i in range(200)])\n"
            "ok = [x for x in r if not x.startswith('Error')]\n"
            "print(len(ok), r[-1])"
        ),
        repl("FINAL(str(len(ok)))"),
    ]
    # 150 sub-calls fit what the cap leaves after its 10% reserve (the first root call costs
    # about $0.001 at $1 per million).
    max_cost = (150 * SUB_COST + 0.001) / 0.9
    trace = tmp_path / "t.jsonl"
    with FakeLLM(root, lambda prompt: "x" * 96, latency_s=0.01) as fake:
        proc = ask(
            fake, "--prices", str(prices), "--max-cost", f"{max_cost:.4f}",
            "--max-concurrency", "32", "--trace", str(trace), "--json", "-q",
        )  # fmt: skip
        sent = len(sub_requests(fake))
        feedback = root_requests(fake)[1]["body"]["messages"][-1]["content"]
    assert 140 <= sent <= 150, sent  # the budget is used, and never overrun
    assert proc.returncode == 6, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "max_cost"  # even though the root answered
    assert data["answer"] == str(sent)
    # Each refused slot got an error string naming the budget; the root was told how many.
    assert "not sent: the max_cost budget" in feedback
    assert f"{200 - sent} of the 200 sub-call(s) of one llm_query call were not sent" in feedback
    assert "The whole fan-out would have cost about $0.7" in feedback  # 200 x $0.0036
    (summary,) = finished(trace)
    assert summary["status"] == "max_cost"
    assert summary["subcalls_failed"] == 200 - sent
    assert summary["failures"] == {"budget": 200 - sent}
    records = read_trace(trace)
    spent = sum(r["cost_usd"] or 0.0 for r in records if r["type"] == "subcall_finished")
    assert spent <= max_cost * 0.9


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def test_calls_in_flight_count_at_their_bound_not_as_average_calls() -> None:
    # Case 1: two root calls were charged, 32 sub-calls were in flight, and the projection
    # counted each of those as one more average call (a root call's cost): 17 times the spend.
    async def scenario() -> list[str | None]:
        budget = Budget(Limits(max_cost=0.05), EventBus())
        budget.charge(Usage(3_000, 100), 0.0035)  # the root calls: 8% of the cap
        budget.charge(Usage(3_000, 100), 0.0035)
        small = Bound(cost=0.0002, tokens=600)
        return [await budget.admit(small) for _ in range(32)]

    assert run_async(scenario()) == [None] * 32


def test_admission_waits_for_calls_in_flight_and_refuses_only_what_cannot_fit() -> None:
    async def scenario() -> dict[str, Any]:
        budget = Budget(Limits(max_cost=1.0), EventBus())  # 0.9 before the reserve
        bound = Bound(cost=0.4, tokens=100)
        first = await budget.admit(bound)
        second = await budget.admit(bound)
        # A third fits only if one of the two spends less than its bound: it waits.
        third = asyncio.ensure_future(budget.admit(bound))
        await asyncio.sleep(0)
        waited = not third.done()
        budget.settle(bound, Usage(10, 10), 0.05)  # the first spent far less than it could
        admitted = await asyncio.wait_for(third, 5)
        # Spent 0.05, held 0.8: a call of 0.4 cannot fit even once both are settled... unless
        # they spend less; so it waits, and is refused when they spend it all.
        fourth = asyncio.ensure_future(budget.admit(bound))
        await asyncio.sleep(0)
        budget.settle(bound, Usage(10, 10), 0.4)
        budget.settle(bound, Usage(10, 10), 0.4)
        refused = await asyncio.wait_for(fourth, 5)
        too_big = await budget.admit(Bound(cost=2.0, tokens=1))
        return {
            "first": first, "second": second, "waited": waited, "third": admitted,
            "fourth": refused, "too_big": too_big, "holding": budget.holding,
            "exhausted": budget.exhausted(),
        }  # fmt: skip

    assert run_async(scenario()) == {
        "first": None, "second": None, "waited": True, "third": None,
        "fourth": "max_cost", "too_big": "max_cost", "holding": 0, "exhausted": None,
    }  # fmt: skip


def test_a_token_budget_refuses_on_the_bound_too() -> None:
    async def scenario() -> list[str | None]:
        budget = Budget(Limits(max_tokens=1_000), EventBus())
        bound = Bound(cost=None, tokens=400)  # a price unknown: only the tokens can be held
        got = [await budget.admit(bound), await budget.admit(bound)]
        third = asyncio.ensure_future(budget.admit(bound))  # 400 alone fits: it waits
        await asyncio.sleep(0)
        budget.settle(bound, Usage(300, 100), None)  # one spent all of its bound
        await asyncio.sleep(0)
        waiting = not third.done()  # 400 spent + 400 held + 400 > 1,000, but 400 + 400 fits
        budget.settle(bound, Usage(300, 100), None)  # so did the other
        got.append(await asyncio.wait_for(third, 5))  # 800 spent + 400 > 1,000: refused, named
        got.append(None if waiting else "did not wait")
        return got

    assert run_async(scenario()) == [None, None, "max_tokens", None]


@pytest.mark.slow
def test_a_call_no_budget_left_can_cover_is_refused_and_cuts_the_status(
    write_script: Callable[..., str],
) -> None:
    # The scripted worker is free, but tokens count: each call can take its prompt plus the
    # default 4,096 output tokens, so 1,000 tokens cannot cover one; the root answers anyway.
    script = write_script(
        [repl("r = llm_query('hello')\nprint(r)"), repl("FINAL('answered around it')")]
    )
    proc = ask_scripted(script, "--max-tokens", "100000000", "--json", "-q", "q?", stdin=b"x")
    assert proc.returncode == 0, proc.stderr  # it fits a large budget
    proc = ask_scripted(script, "--max-tokens", "1000", "--json", "-q", "q?", stdin=b"x")
    data = json.loads(proc.stdout)
    assert data["status"] == "max_tokens" and data["answer"] == "answered around it"
    assert proc.returncode == 6


# ----- case 3: failed sub-calls reach the result, the summary, the trace and the tree -----


@pytest.mark.slow
def test_failed_subcalls_are_counted_by_kind_everywhere(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    # A 1,000-token window: a prompt over 3,600 characters is refused before sending.
    prices.write_text("models:\n  w: {window: 1000, max_output: 100}\n")
    root = [
        repl(
            "r = llm_query_batched(['fine', 'x' * 5000, 'also fine'])\nprint([x[:40] for x in r])"
        ),
        repl("FINAL('done')"),
    ]
    trace = tmp_path / "t.jsonl"
    faults = [Fault("status", 500, target="sub")]
    with FakeLLM(root, faults=faults) as fake:
        proc = ask(
            fake, "--prices", str(prices), "--max-retries", "1", "--max-concurrency", "1",
            "--view", "plain", "--trace", str(trace),
        )  # fmt: skip
    stderr = proc.stderr.decode()
    # The plain view's summary line says it.
    assert "3 sub-call(s) · 2 sub-call(s) failed (" in stderr, stderr
    assert "context_length 1" in stderr and "provider 1" in stderr
    (summary,) = finished(trace)
    assert summary["subcalls_failed"] == 2
    assert summary["failures"] == {"context_length": 1, "provider": 1}
    # The tree: the iteration is not marked done, in the trace view and the collapsed line.
    shown = run_rlm("trace", "show", str(trace), env={"COLUMNS": "140"}).stdout.decode()
    assert "⚠ iteration 1 · 2 sub-call(s) failed" in shown, shown
    assert "sub-calls 3 done, 0 in flight, 2 failed" in shown
    # The trajectory and the HTML page say it too.
    doc = trajectory(load_trace(trace))
    assert doc["run"]["subcalls_failed"] == 2
    assert doc["run"]["failures"] == {"context_length": 1, "provider": 1}
    assert "2 sub-calls failed (" in export_html(load_trace(trace))


@pytest.mark.slow
def test_a_child_runs_failures_count_in_the_top_run(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  w: {window: 1000, max_output: 100}\n")
    root = [
        repl("r = rlm_query('q', context='abc')\nprint(r)"),
        repl("y = llm_query('x' * 5000)\nFINAL(y)"),  # the child: its one sub-call is too big
        repl("FINAL('done')"),
    ]
    trace = tmp_path / "t.jsonl"
    with FakeLLM(root) as fake:
        proc = ask(
            fake, "--prices", str(prices), "--max-depth", "2", "--trace", str(trace),
            "--json", "-q",
        )  # fmt: skip
    data = json.loads(proc.stdout)
    assert data["subcalls_failed"] == 1 and data["failures"] == {"context_length": 1}
    child, top = finished(trace)
    assert child["subcalls_failed"] == 1 and top["subcalls_failed"] == 1
    assert top["failures"] == {"context_length": 1}


def test_a_result_holds_the_failures_of_the_whole_tree() -> None:
    provider = ScriptedProvider.from_data(
        {"root": [repl("r = llm_query_batched(['a', 'b'])"), repl("FINAL('x')")], "sub": []}
    )
    result = RLM(root_provider=provider, max_tokens=3000).completion("c", "q")
    # 3,000 tokens cannot cover one call (its prompt plus 4,096 output tokens at most).
    assert result.subcalls_failed == 2 and result.failures == {"budget": 2}
    assert result.status == "max_tokens" and result.exit_code == 6
    (event,) = [e for e in result.events if isinstance(e, RunFinished)]
    assert event.subcalls_failed == 2 and event.failures == {"budget": 2}


def events_of_one_iteration(cell: CellFinished | None, *more: Any) -> RunTree:
    run = RunTree()
    run.apply(
        RunStarted(
            "run1", question="q", root_model="r", sub_model="w", inputs={},
            context_meta={}, settings={"max_iterations": 5}, ts=1000.0,
        )
    )  # fmt: skip
    for iteration in (1, 2):
        run.apply(IterationStarted("run1", iteration=iteration, max_iterations=5, ts=1000.0))
        run.apply(
            RootReply(
                "run1", iteration=iteration, text="```repl\nx\n```", model="r", usage={},
                elapsed_s=0.1, code_blocks=1, ts=1000.1,
            )
        )  # fmt: skip
        run.apply(CellStarted("run1", iteration=iteration, cell=iteration, code="x", ts=1000.1))
        if iteration == 1:
            for event in more:
                run.apply(event)
            if cell is not None:
                run.apply(cell)
        else:
            run.apply(
                CellFinished(
                    "run1", iteration=2, cell=2, output="", output_chars=0, error=False,
                    elapsed_s=0.1, ts=1000.2,
                )
            )  # fmt: skip
    return run


def test_the_tree_marks_lost_work_never_with_a_check_mark() -> None:
    ok_cell = CellFinished(
        "run1", iteration=1, cell=1, output="", output_chars=0, error=False, elapsed_s=0.1
    )
    started = SubcallStarted("run1", subcall_id=1, cell=1, model="w", prompt="p")
    failed = SubcallFinished(
        "run1", subcall_id=1, cell=1, model="w", reply="", usage={}, elapsed_s=0.1,
        error="not sent: the max_cost budget is used up",
    )  # fmt: skip
    timed_out = CellFinished(
        "run1", iteration=1, cell=1, output="", output_chars=0, error=True, elapsed_s=5.0,
        timed_out=True,
    )  # fmt: skip
    raised = CellFinished(
        "run1", iteration=1, cell=1, output="Error", output_chars=5, error=True, elapsed_s=0.1
    )
    line = {
        "ok": draw(events_of_one_iteration(ok_cell)),
        "failed": draw(events_of_one_iteration(ok_cell, started, failed)),
        "timed out": draw(events_of_one_iteration(timed_out)),
        "error": draw(events_of_one_iteration(raised)),
    }
    assert "✓ iteration 1" in line["ok"]
    assert "⚠ iteration 1 · 1 cell(s) · 1 sub-call(s) (1 failed)" in line["failed"]
    assert "⚠ iteration 1" in line["timed out"]
    assert "✗ iteration 1" in line["error"]
    # Interrupted while its cell ran: the run finished, the cell never did.
    run = events_of_one_iteration(None)
    run.apply(
        RunFinished(
            "run1", status="interrupted", answer=None, iterations=2, subcalls=0, usage={},
            elapsed_s=1.0,
        )
    )  # fmt: skip
    assert "⚠ iteration 1" in draw(run)
    expanded = draw(run, expanded=True)
    assert "⚠ iteration 1" in expanded and "cell 1 interrupted" in expanded


# ----- case 17: no answer is None, never an empty or made-up one -----


@pytest.mark.slow
def test_a_failed_final_var_on_the_last_turn_is_no_answer(
    write_script: Callable[..., str],
) -> None:
    script = write_script([repl("x = 1"), "FINAL_VAR(missing)"])
    proc = ask_scripted(script, "--max-iterations", "1", "q?", stdin=b"x")
    assert proc.returncode == 6
    assert proc.stdout == b""  # no "FINAL_VAR(missing)" passed off as the answer
    assert "no answer" in proc.stderr.decode()


def test_an_empty_last_reply_is_no_answer() -> None:
    provider = ScriptedProvider.from_data({"root": [repl("x = 1"), "   "], "sub": []})
    result = RLM(root_provider=provider, max_iterations=1).completion("c", "q")
    assert result.status == "max_iterations" and result.answer is None


def test_a_sub_call_that_timed_out_is_counted_as_a_timeout() -> None:
    """By the error's class (or its cause's, once retries are exhausted), not its words."""
    from rlm_cli.engine.router import failure_kind
    from rlm_cli.errors import ProviderError, RequestTimeout, RetryableError

    timeout = RequestTimeout("w: the request timed out after 1 s")
    exhausted = ProviderError("w failed after 2 attempt(s): ...")
    exhausted.__cause__ = timeout
    other = ProviderError("w failed after 2 attempt(s): ...")
    other.__cause__ = RetryableError("w: connection failed: timed out waiting")  # words only
    assert [failure_kind(e) for e in (timeout, exhausted, other)] == [
        "timeout",
        "timeout",
        "provider",
    ]

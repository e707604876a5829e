"""A run's record holds whatever its watchers do, and cached replies never cross endpoints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import invoke_rlm, read_trace, repl

from rlm_cli import RLM
from rlm_cli.bench.fake_llm import FakeLLM
from rlm_cli.events import CellFinished, Event


def test_a_subscriber_that_raises_is_dropped_and_the_run_and_trace_go_on(tmp_path: Path) -> None:
    """Issue 10, case 9: a failing view ended the run as an internal error, and the trace lost
    the event it failed on."""
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"root": [repl("print(1)"), repl("FINAL('done')")]}))
    trace = tmp_path / "t.jsonl"
    seen: list[str] = []
    errors: list[BaseException] = []

    def view(event: Event) -> None:
        seen.append(event.type)
        if isinstance(event, CellFinished):
            raise RuntimeError("view bug")

    rlm = RLM(provider="scripted", script=str(script), trace=str(trace))
    result = rlm.completion("text", "q?", on_event=view)  # no error handler: a line on stderr
    assert result.status == "ok" and result.answer == "done"
    assert seen[-1] == "cell_finished"  # dropped after the event it failed on
    types = [line["type"] for line in read_trace(trace)]
    assert types.count("cell_finished") == 2 and types[-1] == "run_finished"

    again = RLM(provider="scripted", script=str(script))  # its own copy of the script
    asyncio.run(again.run("text", "q?", view, on_subscriber_error=lambda _, e: errors.append(e)))
    assert [str(e) for e in errors] == ["view bug"]


def test_root_replies_from_two_endpoints_never_share_a_cache_key() -> None:
    """Issue 10, case 10: with --cache-root the key held the worker's endpoint for root calls
    too, so a second server's run replayed the first server's root replies."""
    with (
        FakeLLM([repl("FINAL('from A')")]) as a,
        FakeLLM([repl("FINAL('from B')")]) as b,
    ):
        answers = []
        for root in (a, b):
            result = invoke_rlm(
                "ask", "--provider", "openai", "--base-url", f"{root.url}/v1",
                "--sub-base-url", f"{a.url}/v1", "--model", "r", "--sub-model", "w",
                "--cache-root", "-q", "q?",
                stdin=b"text", env={"OPENAI_API_KEY": a.api_key},
            )  # fmt: skip
            assert result.exit_code == 0, result.stderr
            answers.append(result.stdout)
    assert answers == ["from A\n", "from B\n"]

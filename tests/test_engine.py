"""The loop, through the library API with the scripted provider and a real worker process."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from conftest import heavy_imports, read_trace, repl

from rlm_cli import RLM
from rlm_cli.engine.parsing import extract_code_blocks, find_prose_final
from rlm_cli.errors import ProviderError
from rlm_cli.events import CellFinished, FinalAnswer, RootTextDelta, SubcallFinished
from rlm_cli.providers.scripted import ScriptedProvider


def rlm_with(root: list[str], sub: list[dict[str, str]] | None = None, **settings: object) -> RLM:
    provider = ScriptedProvider.from_data({"root": root, "sub": sub or [{"reply": "ok"}]})
    return RLM(root_provider=provider, **settings)


def test_batched_thousand_prompts_come_back_in_order() -> None:
    rlm = rlm_with(
        [
            repl(
                "replies = llm_query_batched([f'item {i}' for i in range(1000)])\nFINAL_VAR('replies')"
            )
        ],
        [{"match": r"item (\d+)", "reply": r"reply \1"}],
    )
    result = rlm.completion("ctx", "q")
    assert result.answer == str([f"reply {i}" for i in range(1000)])
    assert result.subcalls == 1000
    assert result.usage["by_model"]["scripted-worker"]["calls"] == 1000
    finished = [e for e in result.events if isinstance(e, SubcallFinished)]
    assert len(finished) == 1000 and all(e.batch_id == 1 for e in finished)


def test_prose_final_is_ignored_in_a_turn_with_code() -> None:
    rlm = rlm_with(
        [
            repl("x = 2 + 2\nprint(x)") + "The output will be 5.\nFINAL(5)\n",
            repl("FINAL(x)"),
        ]
    )
    result = rlm.completion("ctx", "q")
    assert result.answer == "4"
    assert result.iterations == 2


def test_prose_final_is_accepted_in_a_turn_without_code() -> None:
    result = rlm_with([repl("print(context)"), 'I have it.\nFINAL("the answer")']).completion(
        "c", "q"
    )
    assert result.answer == "the answer"
    assert [e.source for e in result.events if isinstance(e, FinalAnswer)] == ["prose"]


def test_prose_final_var_reads_the_variable() -> None:
    result = rlm_with([repl("found = context.upper()"), "FINAL_VAR(found)"]).completion("abc", "q")
    assert result.answer == "ABC"


def test_answer_dict_ends_the_run() -> None:
    result = rlm_with(
        [repl("answer = {'content': 'draft', 'ready': False}"), repl("answer['ready'] = True")]
    ).completion("c", "q")
    assert result.answer == "draft" and result.iterations == 2


def test_final_var_missing_name_lists_variables_and_the_run_goes_on() -> None:
    result = rlm_with(
        [repl("total = 3\nFINAL_VAR('totl')"), repl("FINAL_VAR('total')")]
    ).completion("c", "q")
    cells = [e for e in result.events if isinstance(e, CellFinished)]
    assert cells[0].error and "totl" in cells[0].output and "total" in cells[0].output
    assert result.answer == "3"


def test_reply_without_code_or_final_gets_a_nudge() -> None:
    rlm = rlm_with(["I think the answer is obvious.", repl("FINAL('done')")])
    result = rlm.completion("c", "q")
    assert result.answer == "done" and result.iterations == 2


def test_several_blocks_run_in_order_and_stop_at_final() -> None:
    reply = repl("a = 1") + repl("a += 1\nFINAL(a)") + repl("a = 100")
    result = rlm_with([reply]).completion("c", "q")
    assert result.answer == "2"
    assert sum(isinstance(e, CellFinished) for e in result.events) == 2


def test_cell_output_fed_back_is_capped() -> None:
    seen: list[str] = []

    class Spy(ScriptedProvider):
        async def complete(self, request):  # type: ignore[no-untyped-def]
            seen.append(request.messages[-1].content)
            return await super().complete(request)

    spy = Spy([repl("print('x' * 50_000, end='')"), repl("FINAL(1)")], [])
    RLM(root_provider=spy, output_limit=2_000).completion("c", "q")
    feedback = seen[1]
    assert len(feedback) < 3_000
    assert "48,000 of 50,000 characters cut" in feedback


def test_root_text_streams_as_deltas() -> None:
    result = rlm_with([repl("FINAL(1)", "line one\nline two")]).completion("c", "q")
    deltas = "".join(e.text for e in result.events if isinstance(e, RootTextDelta))
    assert deltas.startswith("line one\nline two\n```repl")


def test_script_exhausted_raises_provider_error() -> None:
    with pytest.raises(ProviderError, match="add more replies"):
        rlm_with([repl("print(1)")]).completion("c", "q")


def test_trace_shortens_long_subcall_prompts(tmp_path: Path) -> None:
    long_prompt = "p" * 5_000
    trace = tmp_path / "t.jsonl"
    rlm_with([repl(f"r = llm_query('{long_prompt}')\nFINAL(r)")], trace=str(trace)).completion(
        "c", "q"
    )
    started = next(r for r in read_trace(trace) if r["type"] == "subcall_started")
    assert started["prompt"]["length"] == 5_000
    assert started["prompt"]["sha256"] == hashlib.sha256(long_prompt.encode()).hexdigest()
    assert len(started["prompt"]["head"]) + len(started["prompt"]["tail"]) == 2_000

    full = tmp_path / "full.jsonl"
    rlm_with(
        [repl(f"r = llm_query('{long_prompt}')\nFINAL(r)")], trace=str(full), trace_full=True
    ).completion("c", "q")
    started = next(r for r in read_trace(full) if r["type"] == "subcall_started")
    assert started["prompt"] == long_prompt


def test_trace_header_and_summary(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = rlm_with([repl("FINAL(len(context))")], trace=str(trace)).completion(
        "hello", "how long?"
    )
    records = read_trace(trace)
    header, summary = records[0], records[-1]
    assert header["type"] == "trace_header" and header["format_version"] == 1
    assert header["question"] == "how long?" and header["inputs"]["files"] == 1
    assert summary["type"] == "run_finished" and summary["answer"] == "5"
    assert summary["usage"] == result.usage
    assert all(r["type"] != "root_text_delta" for r in records)
    json.dumps(records)  # everything in the trace is plain JSON


def test_parsing() -> None:
    text = "a\n```python\nx = 1\n```\nb\n```repl\ny = 2\n```\n```bash\nls\n```"
    assert extract_code_blocks(text) == ["x = 1", "y = 2"]
    final = find_prose_final("Done.\nFINAL('it is 42')")
    assert final is not None and final.answer == "it is 42"
    final = find_prose_final("FINAL(a (nested) answer)")
    assert final is not None and final.answer == "a (nested) answer"
    var = find_prose_final("FINAL_VAR('result')")
    assert var is not None and var.variable == "result"
    assert find_prose_final("I will call FINAL(x) later") is None


def test_engine_imports_no_ui_or_sdk() -> None:
    assert heavy_imports("import rlm_cli.engine.run, rlm_cli.api") == []


def test_worker_imports_only_the_standard_library() -> None:
    import ast

    import rlm_cli.sandbox.worker as worker

    stdlib = sys.stdlib_module_names
    for path in Path(worker.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                ok = name.split(".")[0] in stdlib or name.startswith("rlm_cli.sandbox.worker")
                assert ok, f"{path.name} imports {name}"


def test_event_json_is_stable() -> None:
    event = FinalAnswer("run1", iteration=2, answer="x", source="FINAL", ts=1.0)
    assert event.to_json() == {
        "type": "final_answer",
        "run_id": "run1",
        "ts": 1.0,
        "iteration": 2,
        "answer": "x",
        "source": "FINAL",
    }


def test_events_round_trip_through_json() -> None:
    from rlm_cli.events import event_from_json

    result = rlm_with([repl("r = llm_query_batched(['a', 'b'])\nFINAL(r)")]).completion("c", "q")
    for event in result.events:
        data = json.loads(json.dumps(event.to_json()))
        assert event_from_json(data) == event
    assert event_from_json({"type": "trace_header"}) is None


def test_prose_final_ends_at_the_first_closing_line() -> None:
    final = find_prose_final("FINAL(Paris)\n\n(Found in the second paragraph of the context.)")
    assert final is not None and final.answer == "Paris"
    assert find_prose_final("```repl\nFINAL(result)\n```") is None  # code is not prose


def test_the_system_prompt_teaches_every_repl_helper() -> None:
    """The helper names live in one list (the worker's SCAFFOLD); the prompt must name each."""
    import dataclasses

    from rlm_cli.engine.prompts import RunFacts, method_text, system_prompt
    from rlm_cli.sandbox.worker.protocol import SCAFFOLD

    facts = RunFacts(100_000, "worker", 20_000, 30, 120, recursive=True, max_depth=2)
    prompt = system_prompt(method_text(None), facts)
    for name in SCAFFOLD:
        assert f"`{name}" in prompt, name
    flat = system_prompt(method_text(None), dataclasses.replace(facts, recursive=False))
    assert "`rlm_query" not in flat  # at the depth limit it is a plain llm_query: not taught

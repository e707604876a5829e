"""--direct-below: a small input is answered by one plain root call holding the whole text."""

from __future__ import annotations

from pathlib import Path

from conftest import invoke_rlm, read_trace, repl

from rlm_cli.bench.fake_llm import FakeLLM


def ask(root: FakeLLM, tmp_path: Path, text: bytes, *flags: str) -> tuple[int, str, list[dict]]:
    trace = tmp_path / "t.jsonl"
    result = invoke_rlm(
        "ask", "--provider", "openai", "--base-url", f"{root.url}/v1", "--model", "r",
        "--sub-model", "w", "--no-cache", "-q", "--trace", str(trace), *flags, "what is it?",
        stdin=text, env={"OPENAI_API_KEY": root.api_key},
    )  # fmt: skip
    return result.exit_code, result.stdout, read_trace(trace)


def test_an_input_under_the_threshold_gets_one_plain_call_with_the_whole_text(
    tmp_path: Path,
) -> None:
    with FakeLLM(["It is a haiku about rain."]) as root:
        code, out, events = ask(
            root, tmp_path, b"rain on the roof\nall night\n", "--direct-below", "1000"
        )
        calls = [r for r in root.requests if r["body"] and "messages" in r["body"]]
    assert code == 0 and out == "It is a haiku about rain.\n"
    assert len(calls) == 1
    prompt = calls[0]["body"]["messages"][-1]["content"]
    assert "rain on the roof\nall night" in prompt and "Question: what is it?" in prompt
    types = [event["type"] for event in events]
    assert "cell_started" not in types
    started = next(event for event in events if event["type"] == "run_started")
    assert started["sandbox"]["mode"] == "direct"
    assert next(e for e in events if e["type"] == "final_answer")["source"] == "direct"


def test_an_input_over_the_threshold_runs_the_repl(tmp_path: Path) -> None:
    with FakeLLM([repl("FINAL(str(len(context)))")]) as root:
        code, out, events = ask(root, tmp_path, b"x" * 4000, "--direct-below", "100")
    assert code == 0 and out == "4000\n"
    assert any(event["type"] == "cell_started" for event in events)


def test_off_by_default(tmp_path: Path) -> None:
    with FakeLLM([repl("FINAL('looked')")]) as root:
        code, out, _events = ask(root, tmp_path, b"tiny")
    assert code == 0 and out == "looked\n"

"""The method text: rlm's own, the packaged `official` profile, a --system-prompt file and its
{placeholders}; each turn's feedback; and what the root model of a real `rlm ask` run is sent."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import invoke_scripted, repl

from rlm_cli.engine.prompts import (
    PLACEHOLDERS,
    RunFacts,
    cell_feedback,
    first_message,
    last_turn,
    method_text,
    placeholder_values,
    system_prompt,
)
from rlm_cli.errors import ConfigError
from rlm_cli.providers.base import Completion, ModelRequest
from rlm_cli.providers.scripted import ScriptedProvider

FACTS = RunFacts(114_688, "worker-mini", 20_000, 30, 120, recursive=False, max_depth=1)
# The reference implementation's first request (its system prompt and first user message).
OFFICIAL_FIRST_REQUEST = 5_700


def test_every_placeholder_has_a_value() -> None:
    assert set(placeholder_values(FACTS)) == set(PLACEHOLDERS)


def test_the_default_prompt_has_one_finishing_protocol_and_tells_the_truth() -> None:
    prompt = system_prompt(method_text(None), FACTS)
    assert "answer = {" not in prompt and '"ready"' not in prompt  # no third finishing route
    assert "Finish by calling FINAL or FINAL_VAR in a ```repl block" in prompt
    assert "Several blocks in one reply run in order" in prompt
    assert '"Error: llm_query failed: "' in prompt  # what a failed slot holds
    assert "114,688 characters" in prompt and "20,000 characters per block" in prompt
    assert "Example 1" in prompt and "Example 2" in prompt and "llm_map(parts" in prompt
    assert not prompt.startswith("%")  # the file's comment lines are not sent


def test_the_default_prompt_is_concise() -> None:
    """Measured against the reference implementation's first request (~5.7K characters): the
    method and a first message together stay under it."""
    prompt = system_prompt(method_text(None), dataclasses.replace(FACTS, recursive=True))
    first = first_message("q", {"type": "str", "chars": 10, "lines": 1}, FACTS)
    assert len(prompt) < 5_000
    assert len(prompt) + len(first) < OFFICIAL_FIRST_REQUEST + 1_000


def test_the_official_profile_keeps_the_reference_protocol_with_our_figures() -> None:
    prompt = system_prompt(method_text("official"), FACTS)
    order = ["`context`", "`llm_query(", "`llm_query_batched(", "`SHOW_VARS()`", "```repl"]
    order += ["FINAL(your final answer)", "FINAL_VAR(variable_name)"]
    positions = [prompt.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "about 114,688 characters" in prompt and "20,000 characters" in prompt
    assert prompt.count("```repl\n") == 3  # its three examples
    assert not any("{" + name in prompt for name in PLACEHOLDERS)  # every one was written
    assert 'f"Is there a magic number in this text? If so, what is it?\\n{part}"' in prompt
    assert "`rlm_query(" not in prompt
    recursive = system_prompt(method_text("official"), dataclasses.replace(FACTS, recursive=True))
    assert "`rlm_query(" in recursive


def test_a_prompt_file_with_placeholders(tmp_path: Path) -> None:
    path = tmp_path / "method.txt"
    path.write_text(
        "% a note for myself\nChunks of {subcall_chars:,} chars for {worker_model}; {{braces}}.\n"
        "{limits}\n"
    )
    prompt = system_prompt(method_text(str(path)), FACTS)
    assert prompt.startswith("Chunks of 114,688 chars for worker-mini; {braces}.\n- Iterations: 30")
    assert "- Budgets: none set." in prompt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Use {chunk_size} characters.", "unknown placeholder {chunk_size}; the known ones are "),
        ('f"{name}"', "unknown placeholder {name}"),
        ("{}", "unknown placeholder {}"),
        ("a lone } brace", "Single '}' encountered"),
        ("{worker_model:,}", "a placeholder cannot be written"),
        ("", "the file is empty"),
        ("% only a comment\n", "the file is empty"),
    ],
)
def test_a_bad_prompt_file_fails_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        method_text(str(path))
    message = str(caught.value)
    assert message.startswith(f"system_prompt {path}: ") and "\n" not in message
    assert expected in message
    if "unknown placeholder" in expected:
        assert "subcall_chars, worker_model" in message and "{{ and }}" in message


def test_an_unreadable_prompt_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.txt: no such file; give a prompt file or"):
        method_text(str(tmp_path / "missing.txt"))
    (tmp_path / "latin1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ConfigError, match="not UTF-8"):
        method_text(str(tmp_path / "latin1.txt"))
    with pytest.raises(ConfigError, match="cannot read it"):
        method_text(str(tmp_path))  # a directory


def test_feedback_shows_what_is_left_of_every_budget() -> None:
    left = {"max_subcalls": "120 of 500 sub-calls", "max_cost": "$1.2040 of $2"}
    feedback = cell_feedback(["4"], 3, FACTS, left)
    assert feedback == (
        "Output:\n4\n\n[Iteration 3 of 30; 27 left. Budgets left: $1.2040 of $2 · 120 of 500 "
        "sub-calls.]"
    )
    assert (
        cell_feedback([""], 1, FACTS, {}) == "Output:\n(no output)\n\n[Iteration 1 of 30; 29 left.]"
    )


def test_the_last_turn_asks_for_code_not_a_prose_final() -> None:
    message = last_turn("max_iterations", 30)
    assert message.startswith("You have used all 30 iterations. This is your last turn")
    assert "FINAL_VAR(...)" in message and "as text" not in message


# ----- what the root model of a real run is sent -----


@pytest.fixture
def root_requests(monkeypatch: pytest.MonkeyPatch) -> list[ModelRequest]:
    """Every root request the scripted provider answers in this test."""
    seen: list[ModelRequest] = []
    original: Callable[[ScriptedProvider, ModelRequest], Any] = ScriptedProvider.complete

    async def complete(self: ScriptedProvider, request: ModelRequest) -> Completion:
        if request.purpose == "root":
            seen.append(request)
        result: Completion = await original(self, request)
        return result

    monkeypatch.setattr(ScriptedProvider, "complete", complete)
    return seen


def test_ask_with_a_system_prompt_file(
    write_script: Callable[..., str], tmp_path: Path, root_requests: list[ModelRequest]
) -> None:
    (tmp_path / "notes.txt").write_text("alpha\nbeta\n")
    method = tmp_path / "method.txt"
    method.write_text("My own method. Sub-calls hold {subcall_chars} characters.\n")
    script = write_script([repl("FINAL(len(context))")])
    proc = invoke_scripted(
        script, "--system-prompt", str(method), str(tmp_path / "notes.txt"), "q?"
    )
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout == "11\n"
    (request,) = root_requests
    system, first = request.messages[0], request.messages[1]
    assert system.role == "system"
    assert re.fullmatch(r"My own method\. Sub-calls hold \d+ characters\.\n", system.content)
    assert first.role == "user" and "the file `" in first.content and "notes.txt`" in first.content
    assert "  1: alpha\n  2: beta" in first.content and "Question: q?" in first.content


def test_ask_with_the_official_profile(
    write_script: Callable[..., str], tmp_path: Path, root_requests: list[ModelRequest]
) -> None:
    (tmp_path / "notes.txt").write_text("alpha\n")
    script = write_script([repl("FINAL('done')")])
    proc = invoke_scripted(script, "--system-prompt", "official", str(tmp_path / "notes.txt"), "q?")
    assert proc.exit_code == 0, proc.stderr
    (request,) = root_requests
    assert request.messages[0].content == system_prompt(
        method_text("official"), _facts_of(request.messages[0].content)
    )
    assert request.messages[0].content.startswith("Your job is to answer a query")


def test_ask_with_a_bad_system_prompt_fails_before_any_model_call(
    write_script: Callable[..., str], tmp_path: Path, root_requests: list[ModelRequest]
) -> None:
    (tmp_path / "notes.txt").write_text("alpha\n")
    method = tmp_path / "method.txt"
    method.write_text("Chunks of {chunk_chars}.\n")
    script = write_script([repl("FINAL('done')")])
    proc = invoke_scripted(
        script, "--system-prompt", str(method), str(tmp_path / "notes.txt"), "q?"
    )
    assert proc.exit_code == 3
    assert "unknown placeholder {chunk_chars}" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert root_requests == []


def _facts_of(prompt: str) -> RunFacts:
    """The figures a rendered official prompt was made with (its capacity and output cap)."""
    capacity = re.search(r"take about ([\d,]+) characters", prompt)
    output = re.search(r"truncated \(to ([\d,]+) characters", prompt)
    assert capacity is not None and output is not None
    return dataclasses.replace(
        FACTS,
        subcall_chars=int(capacity.group(1).replace(",", "")),
        output_limit=int(output.group(1).replace(",", "")),
    )

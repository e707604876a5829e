"""What the root model is told: the method, the context's metadata, and each turn's feedback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlm_cli.inputs import estimate_tokens


@dataclass(frozen=True)
class RunFacts:
    """What the root model is told about its run's limits and tools (the prompt's figures)."""

    subcall_chars: int  # the most characters one sub-call prompt may hold (the worker's capacity)
    worker_model: str
    output_limit: int  # characters of a cell's output shown back
    max_iterations: int
    cell_timeout: float  # seconds of a cell's own compute (waits on sub-calls do not count)
    recursive: bool  # rlm_query starts child runs (depth left)
    max_depth: int
    max_subcalls: int | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None


FILES_SHOWN = 100

SYSTEM_PROMPT = """\
You answer a question about a large input that you cannot read directly. The input is loaded in a \
persistent Python REPL as the variable `context`; you see only its size and shape. You explore it \
by writing Python code in ```repl blocks. Each block runs in the same namespace, so variables \
persist between turns, and you see what the code prints.

Functions available in the REPL:
- `llm_query(prompt, model=None) -> str`: ask a worker language model one question. It sees only \
the prompt you pass, so include the text it needs. One prompt may hold about {subcall_chars:,} \
characters.
- `llm_query_batched(prompts, model=None) -> list[str]`: ask many prompts concurrently; replies \
come back in the same order. Much faster than calling llm_query in a loop.
{rlm_query}- `SHOW_VARS()`: list the variables you have defined.
- `FINAL(value)`: end the run with `value` as the answer.
- `FINAL_VAR("name")`: end the run with the value of the variable `name` as the answer. Takes the \
variable's name as a string. Prefer it for long answers: the answer never passes through your own \
output.
- Alternatively set `answer = {{"content": ..., "ready": True}}`.

How to work:
1. Look first. Print the start of `context`, its length, its line count, its format. Never answer \
before you have looked.
2. Filter with code: use regular expressions and keyword searches to find the relevant regions.
3. For questions that need the whole input, split it into chunks of up to about {subcall_chars:,} \
characters (fewer, larger chunks are better than thousands of tiny ones), map a question over the \
chunks with `llm_query_batched`, and combine the replies in Python.
4. Keep intermediate results in variables; do not recompute what you already have.
5. Printed output is cut to about {output_limit:,} characters per block: print samples, counts and \
summaries, never whole chunks.
6. Verify a candidate answer with a targeted check or sub-call before you finish.
7. Write one ```repl block per reply, then stop and wait for its output. Never write what you \
expect the output to be. Call FINAL or FINAL_VAR only from code, once you know the answer.

Example (a different task): to count error lines by service in a log, one might write
```repl
print(len(context), context[:500])
```
then, having seen the format,
```repl
import re, collections
counts = collections.Counter(re.findall(r"ERROR \\[(\\w+)\\]", context))
print(counts.most_common(10))
```
and finally
```repl
result = "\\n".join(f"{{name}}: {{n}}" for name, n in counts.most_common())
FINAL_VAR("result")
```
"""

NO_CODE = (
    "Your reply had no ```repl code block and no FINAL. Write a ```repl block to explore `context`, "
    "or call FINAL(...) / FINAL_VAR(...) from code when you know the answer."
)

LIMIT_REACHED = {
    "max_iterations": "You have used all {iterations} iterations.",
    "max_cost": "The cost budget is used up.",
    "max_tokens": "The token budget is used up.",
    "max_subcalls": "The sub-call budget is used up: no more llm_query calls can be made.",
    "timeout": "The time budget is used up.",
}
LAST_TURN = (
    " Give your best answer now: one ```repl block that calls FINAL(...) or FINAL_VAR(...) with "
    "what you have (no more sub-calls), or write FINAL(your answer) as text."
)


def last_turn(limit: str, iterations: int) -> str:
    """The message that asks for a best-effort answer once `limit` is reached."""
    reason = LIMIT_REACHED.get(limit, "A limit is reached.").format(iterations=iterations)
    return reason + LAST_TURN


RLM_QUERY = """\
- `rlm_query(question, context=None, model=None) -> str`: ask a child RLM, which gets its own \
REPL with `context` set to the value you pass (or this context) and answers like you do. Use it \
for sub-problems too big for one llm_query; it costs more. \
`rlm_query_batched(questions, contexts=None)` runs several.
"""


def method_text(setting: str | None) -> str:
    """The system prompt's template named by the system_prompt setting: rlm's own (None)."""
    return SYSTEM_PROMPT


def system_prompt(template: str, facts: RunFacts) -> str:
    """The method. `rlm_query` is only taught where it starts child runs (--max-depth > 1)."""
    return template.format(
        subcall_chars=facts.subcall_chars,
        output_limit=facts.output_limit,
        rlm_query=RLM_QUERY if facts.recursive else "",
    )


FORMAT_NAMES = {
    "csv": "CSV (comma-separated)",
    "tsv": "TSV (tab-separated)",
    "json": "JSON",
    "jsonl": "JSON Lines (one JSON value per line)",
}


def first_message(question: str, meta: dict[str, Any], facts: RunFacts) -> str:
    """Metadata about `context` (never its content) and the question.

    Structured files are named with their format and header or first record, so that the first
    code can parse them; the text itself stays a str in `context`.
    """
    chars = int(meta.get("chars", 0))
    tokens = int(meta.get("estimated_tokens") or estimate_tokens(chars))
    lines = [
        f"`context` is a {meta.get('type', 'str')} of {chars:,} characters "
        f"(about {tokens:,} tokens)."
    ]
    if "lines" in meta:
        lines[0] = lines[0][:-1] + f", {meta['lines']:,} lines."
    formats: dict[str, dict[str, str]] = meta.get("formats") or {}
    files = meta.get("files")
    if files:
        total = int(meta.get("entries", len(files)))
        lines.append(f"It maps {total:,} file names to their text:")
        for name, size in files[:FILES_SHOWN]:
            form = formats.get(name)
            note = f"; {_format_note(form)}" if form else ""
            lines.append(f"- {name} ({size:,} chars{note})")
        if total > FILES_SHOWN:
            lines.append(f"- ... and {total - FILES_SHOWN:,} more (list them with `list(context)`)")
    elif len(formats) == 1:
        (form,) = formats.values()
        lines.append(f"The text is {_format_note(form)}.")
    invalid = int(meta.get("invalid_bytes_total") or 0)
    if invalid:
        where = ", ".join(
            f"{name} ({n:,})" for name, n in (meta.get("invalid_bytes") or {}).items()
        )
        lines.append(
            f"{invalid:,} invalid byte(s) were replaced with U+FFFD while decoding"
            + (f": {where}." if where and files else ".")
        )
    lines.append("")
    lines.append(f"Question: {question}")
    lines.append("")
    lines.append("Start by looking at `context` in a ```repl block.")
    return "\n".join(lines)


def _format_note(form: dict[str, str]) -> str:
    kind = form.get("kind", "")
    preview = form.get("preview")
    name = FORMAT_NAMES.get(kind, kind)
    return f"{name}; {preview}" if preview else name


REFUSED_NOTE = (
    "[Budget: {refused:,} of the {size:,} sub-call(s) of one llm_query call were not sent: the "
    '{limit} budget could not cover them. Their slots hold an error string ("Error: llm_query '
    'failed: not sent: ..."), not a reply. The whole fan-out would have cost about {whole} at '
    "the cost of the calls sent, {most} at most; {left} is left. Work with the replies you have, "
    "or send fewer or smaller calls.]"
)


def refused_note(*, refused: int, size: int, limit: str, whole: str, most: str, left: str) -> str:
    """Told to the root after a cell in which a budget refused part of a fan-out."""
    return REFUSED_NOTE.format(
        refused=refused, size=size, limit=limit, whole=whole, most=most, left=left
    )


def cell_feedback(
    outputs: list[str], iteration: int, facts: RunFacts, budgets_left: dict[str, str]
) -> str:
    """The user message that carries the outputs of one turn's code back to the root model,
    with what is left of each budget that is set (`Budget.remaining`)."""
    parts = []
    for index, output in enumerate(outputs, start=1):
        label = f"Output of code block {index}" if len(outputs) > 1 else "Output"
        parts.append(f"{label}:\n{output if output.strip() else '(no output)'}")
    max_iterations = facts.max_iterations
    left = max_iterations - iteration
    parts.append(f"[Iteration {iteration} of {max_iterations}; {left} left.]")
    return "\n\n".join(parts)

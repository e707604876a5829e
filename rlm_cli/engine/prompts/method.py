"""The method text (the system prompt): its templates, their {placeholders}, and rendering.

A template is rlm's own (profiles/rlm.txt), the packaged `official` profile (profiles/official.txt,
after the reference implementation's prompt), or a file named by --system-prompt. Templates use
str.format: `{name}` or `{name:,}` for a placeholder of PLACEHOLDERS, `{{` and `}}` for a literal
brace. Lines at the top that start with "%" are comments, not sent. A template is checked when it
is loaded (`method_text`, before the run starts), so a bad file fails with one line.
"""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path
from typing import Any

from rlm_cli.engine.prompts.facts import RunFacts, budgets, limits, seconds
from rlm_cli.errors import ConfigError

# Each placeholder a template may use, and what it becomes (the README lists the same).
PLACEHOLDERS = {
    "subcall_chars": "characters one sub-call prompt may hold, a number ({subcall_chars:,} "
    "writes 114,688)",
    "worker_model": "the worker model's name",
    "output_limit": "characters of a cell's output shown back, a number",
    "max_iterations": "the run's iterations, a number",
    "cell_timeout": "seconds of a cell's own compute, as text (120)",
    "max_depth": "levels of runs from this one down, a number (1: no child runs)",
    "budgets": "the budgets set, as a phrase (at most 500 sub-calls; at most $2 of model "
    "calls), or 'none set'",
    "limits": "every limit in force, one '- ' line each, as the first message lists them",
    "helpers": "the lines teaching grep, lines, chunks and llm_map",
    "rlm_query": "the lines teaching rlm_query and rlm_query_batched where child runs are "
    "allowed (--max-depth above 1), else nothing",
}
PROFILES = {"official": "official.txt"}
DEFAULT_PROFILE = "rlm.txt"

RLM_QUERY = """\
- `rlm_query(question, context=None, model=None) -> str`: ask a child RLM, which gets its own \
REPL with `context` set to the value you pass (or this context) and answers like you do. Use it \
for sub-problems too big for one llm_query; it costs more. \
`rlm_query_batched(questions, contexts=None)` runs several.
"""

HELPERS = """\
- `grep(pattern, where=None, context=0, max_hits=50)`: print the lines matching a regular \
expression as `name:line: text` (`line: text` in a str), with `context` lines around each; \
`where` is a str, a dict of files or a file name (default: `context`). Returns the hits, as \
Hit(name, line, text).
- `lines(where, start, end)`: print lines `start` to `end` (from 1, both included) of a str or \
file, numbered.
- `chunks(text, size=None) -> list[str]`: cut a str (or a dict of files) at line ends into \
pieces that fit one sub-call with room for your question.
- `llm_map(items, instruction, batch_size=None) -> list[str]`: ask `instruction` of each item, \
for a one-line answer each. The items go numbered, as many to a prompt as fit; `N: answer` \
replies are matched back and missing ones asked once more. Returns one answer per item, in \
order; a failed one holds an "Error: llm_query failed: ..." string.
"""

# A run's figures for checking a template when it is loaded (rendering it must not fail later).
SAMPLE = RunFacts(100_000, "worker", 20_000, 30, 120, recursive=True, max_depth=2)


def method_text(setting: str | None) -> str:
    """The system prompt's template the system_prompt setting names: rlm's own (None), the
    packaged `official` profile, or a file. Raises ConfigError for a file that cannot be read
    or uses a placeholder that is not one of PLACEHOLDERS."""
    if setting is None or setting in PROFILES:
        name = DEFAULT_PROFILE if setting is None else PROFILES[setting]
        text = (
            resources.files("rlm_cli.engine.prompts").joinpath("profiles", name).read_text("utf-8")
        )
        return _checked(_strip_comments(text), f"the {setting or 'default'} profile")
    path = Path(setting).expanduser()
    where = f"system_prompt {setting}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{where}: no such file; give a prompt file or 'official' (--system-prompt)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: the file is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot read it ({exc.strerror or exc}); check --system-prompt"
        ) from None
    text = _strip_comments(text)
    if not text.strip():
        raise ConfigError(f"{where}: the file is empty; write the method text in it")
    return _checked(text, where)


def system_prompt(template: str, facts: RunFacts) -> str:
    """The method, rendered with the run's figures. `rlm_query` is only taught where it starts
    child runs (--max-depth > 1)."""
    return template.format_map(placeholder_values(facts))


def placeholder_values(facts: RunFacts) -> dict[str, Any]:
    set_budgets = budgets(facts)
    return {
        "subcall_chars": facts.subcall_chars,
        "worker_model": facts.worker_model,
        "output_limit": facts.output_limit,
        "max_iterations": facts.max_iterations,
        "cell_timeout": seconds(facts.cell_timeout),
        "max_depth": facts.max_depth,
        "budgets": "; ".join(set_budgets) if set_budgets else "none set",
        "limits": "\n".join(limits(facts)),
        "helpers": HELPERS,
        "rlm_query": RLM_QUERY if facts.recursive else "",
    }


def _strip_comments(text: str) -> str:
    lines = text.splitlines(keepends=True)
    while lines and lines[0].startswith("%"):
        lines.pop(0)
    return "".join(lines)


def _checked(text: str, where: str) -> str:
    """`text` if every placeholder in it is known and it renders; else a ConfigError."""
    known = ", ".join(PLACEHOLDERS)
    hint = "write {{ and }} for a literal brace"
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} ({hint})") from None
    for field in fields:
        name = field.split(".")[0].split("[")[0]
        if name not in PLACEHOLDERS:
            shown = "{" + field + "}" if field else "{}"
            raise ConfigError(
                f"{where}: unknown placeholder {shown}; the known ones are {known} ({hint})"
            )
    try:
        system_prompt(text, SAMPLE)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ConfigError(f"{where}: a placeholder cannot be written: {exc} ({hint})") from None
    return text

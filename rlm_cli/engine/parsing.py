"""Reading the root model's replies: code blocks, and a FINAL written in prose."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

CODE_BLOCK = re.compile(r"```(?:repl|python|py)[ \t]*\r?\n(.*?)```", re.DOTALL)
PROSE_FINAL_VAR = re.compile(r"^[ \t]*FINAL_VAR\(\s*['\"]?([A-Za-z_]\w*)['\"]?\s*\)", re.MULTILINE)
# Lazy: the answer ends at the first ")" that closes a line, not at the last one in the reply.
PROSE_FINAL = re.compile(r"^[ \t]*FINAL\((.*?)\)[ \t]*$", re.MULTILINE | re.DOTALL)


def extract_code_blocks(text: str) -> list[str]:
    """The ```repl (or ```python) blocks of a reply, in order, without their fences."""
    return [block.rstrip() for block in CODE_BLOCK.findall(text) if block.strip()]


@dataclass(frozen=True)
class ProseFinal:
    """A FINAL written outside code: either an answer, or the name of a variable to return."""

    answer: str | None = None
    variable: str | None = None


def find_prose_final(text: str) -> ProseFinal | None:
    """A FINAL(...) / FINAL_VAR(...) line in a reply's prose (code blocks are not prose)."""
    text = CODE_BLOCK.sub("", text)
    match = PROSE_FINAL_VAR.search(text)
    if match:
        return ProseFinal(variable=match.group(1))
    match = PROSE_FINAL.search(text)
    if match:
        return ProseFinal(answer=_unquote(match.group(1).strip()))
    return None


def _unquote(text: str) -> str:
    """FINAL("42") means 42: a single string literal loses its quotes; anything else is kept."""
    if text[:1] in {"'", '"'}:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, str):
            return value
    return text

"""Python code as escaped HTML with highlighting spans, for the HTML export.

Pygments' `PythonLexer` and `HtmlFormatter` do the work (pygments is a dependency of rich, so it is
always there, and it imports neither rich nor anything else heavy). The spans carry pygments' short
class names (`k` keywords, `s…` strings, `m…` numbers, `c…` comments, `nb` builtins, `nf`/`nc`
names being defined); the REPL's own names (`SCAFFOLD`: `llm_query`, `FINAL`, …) also get `rlm`,
since they are where the work happens. The page's stylesheet colours them.
"""

from __future__ import annotations

import re

# Pygments ships no type hints (the stubs are a separate package this project does not pull in).
from pygments import highlight  # type: ignore[import-untyped]
from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
from pygments.lexers import PythonLexer  # type: ignore[import-untyped]

from rlm_cli.sandbox.worker.protocol import SCAFFOLD

# Keep the code as it is: no newline added at the end, no blank lines stripped at either end.
_LEXER = PythonLexer(stripnl=False, ensurenl=False)
_FORMATTER = HtmlFormatter(nowrap=True)
# A name token the formatter wrote for one of the REPL's names. The names are identifiers, so
# they are the same escaped or not.
_SCAFFOLD_SPAN = re.compile(
    r'<span class="n">(' + "|".join(re.escape(name) for name in SCAFFOLD) + r")</span>"
)


def highlight_python(code: str) -> str:
    """Escaped HTML of `code` with a span per token. Code that does not parse (models write broken
    code) is still lexed to its end: what cannot be read is marked `err`, never dropped."""
    if not code:
        return ""
    marked: str = highlight(code, _LEXER, _FORMATTER)
    if marked.endswith("\n") and not code.endswith("\n"):  # the lexer ends what it reads with one
        marked = marked[:-1]
    return _SCAFFOLD_SPAN.sub(r'<span class="n rlm">\1</span>', marked)

"""Trace exports: the trajectory document as JSON, and one self-contained HTML page.

`export_json(trace)` is the document of `rlm_cli.trace.reader.trajectory` (its shape is described
there). `export_html(trace)` is the page of `rlm_cli.trace.html` (its ids and classes are listed
there), drawn from the same document, so the two exports cannot disagree.
"""

from __future__ import annotations

import json

from rlm_cli.trace.html import Page
from rlm_cli.trace.markup import encodable
from rlm_cli.trace.reader import Trace, trajectory

FORMATS = ("json", "html")


def export(trace: Trace, fmt: str) -> str:
    """The export of `trace` in `fmt` (one of FORMATS)."""
    if fmt == "json":
        return export_json(trace)
    if fmt == "html":
        return export_html(trace)
    raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def export_json(trace: Trace) -> str:
    """The trajectory document as indented JSON, ending with a newline."""
    text = json.dumps(trajectory(trace), indent=2, ensure_ascii=False) + "\n"
    # A lone surrogate (from a name that was not valid UTF-8) cannot be written as UTF-8; as a
    # \\udcXX escape it is still the same JSON string.
    return encodable(text, "backslashreplace")


def export_html(trace: Trace) -> str:
    """One self-contained HTML page of the run."""
    return Page(trajectory(trace)).render()

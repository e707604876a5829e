"""The first message the root model gets, pinned whole for a single file, a directory and a JSONL
file loaded by a real worker (through the Sandbox), and the parts of it built from the input."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pytest
from test_inputs_worker import load

from rlm_cli.engine.prompts import RunFacts, first_message
from rlm_cli.inputs import InputOptions
from rlm_cli.inputs.resolve import resolve

FACTS = RunFacts(
    114_688,
    "worker-mini",
    20_000,
    30,
    120,
    recursive=False,
    max_depth=1,
    max_subcalls=500,
    max_cost=2.0,
    timeout=900,
)
LIMITS = """\
Limits:
- Iterations: 30 (a reply and the code it runs is one).
- Cell time: 120 s of a cell's own compute; time waiting on sub-calls does not count.
- Output: the first 20,000 characters a cell prints are shown.
- Sub-call size: about 114,688 characters per prompt (worker-mini); a longer prompt is refused.
- Budgets: at most 500 sub-calls; at most $2 of model calls; 900 s for the whole run.
- Depth: sub-calls are plain model calls, with no child runs.

Python 3.11.0, with the standard library only (no numpy, pandas or others).

Question: How many requests failed?

Start by looking at `context` in a ```repl block."""


def meta_of(*args: str) -> dict[str, Any]:
    """The worker's metadata for `args`, with the Python it runs on pinned (checked first)."""
    meta, _ = load(resolve(list(args), None, InputOptions(count_tokens=False)), "pass")
    assert meta["python"] == platform.python_version()  # the worker runs the host's Python here
    assert isinstance(meta["modules"], list)
    return {**meta, "python": "3.11.0", "modules": []}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # inputs named as a user in that folder would name them


def test_a_single_file(tmp_path: Path) -> None:
    log = "".join(f"10.0.0.{n} GET /page/{n} {500 if n % 7 == 0 else 200}\n" for n in range(1, 41))
    long_line = "x" * 250
    (tmp_path / "access.log").write_text(log + long_line + "\n")
    assert first_message("How many requests failed?", meta_of("access.log"), FACTS) == (
        """\
`context` is a str: the file `access.log`, 1,313 characters (about 328 tokens), 41 lines; it \
ends with a newline.
Its first 5 and last 2 lines (cut to 200 characters):
   1: 10.0.0.1 GET /page/1 200
   2: 10.0.0.2 GET /page/2 200
   3: 10.0.0.3 GET /page/3 200
   4: 10.0.0.4 GET /page/4 200
   5: 10.0.0.5 GET /page/5 200
  ..
  40: 10.0.0.40 GET /page/40 200
  41: """
        + "x" * 200
        + """… [+50 chars]

"""
        + LIMITS
    )


def test_a_directory(tmp_path: Path) -> None:
    tree = tmp_path / "shop"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "orders.py").write_text("def total(order):\n    return sum(order)\n")
    (tree / "sales.csv").write_text("day,amount\nmon,3\ntue,4\n")
    (tree / "README").write_text("no newline at the end")
    assert first_message("How many requests failed?", meta_of("shop"), FACTS) == (
        """\
`context` is a dict of the 3 files of the directory `shop`, 84 characters (about 21 tokens) in \
all. Keys are paths relative to it; values are the files' text:
- README (21 chars; 1 line)
- sales.csv (23 chars; 3 lines; CSV (comma-separated); header (2 columns): day,amount)
- src/orders.py (40 chars; 2 lines)

"""
        + LIMITS
    )


def test_a_jsonl_file_without_a_final_newline(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text('{"id": 1, "kind": "start"}\n{"id": 2}')
    assert first_message("How many requests failed?", meta_of("events.jsonl"), FACTS) == (
        """\
`context` is a str: the file `events.jsonl`, 36 characters (about 9 tokens), 2 lines; it does \
not end with a newline.
The text is JSON Lines (one JSON value per line); first record: {"id": 1, "kind": "start"}.
Its lines (cut to 200 characters):
  1: {"id": 1, "kind": "start"}
  2: {"id": 2}

"""
        + LIMITS
    )


@pytest.mark.parametrize(
    "text",
    [
        "one\ntwo\n",  # the count was one too many for a file ending in a newline
        "one\ntwo",
        "a\r\nb\r\n",
        "a\rb\rc",
        "form\x0cfeed\n",
        "\n\n\n",
        "x\u2028y\x85z\r\n\r",
    ],
)
def test_the_line_count_is_that_of_splitlines(tmp_path: Path, text: str) -> None:
    (tmp_path / "t.txt").write_bytes(text.encode("utf-8"))
    meta = meta_of("t.txt")
    assert meta["lines"] == len(text.splitlines())
    assert f"{len(text.splitlines()):,} line" in first_message("q", meta, FACTS)


def test_where_grep_counts_other_lines_the_message_says_so(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("page one\x0cpage two\n")
    message = first_message("q", meta_of("t.txt"), FACTS)
    assert "2 lines (1 counting only \\n, as grep and lines do)" in message


def test_text_from_the_input_is_made_safe_and_bounded(tmp_path: Path) -> None:
    """Escape sequences, bidi overrides and zero-width marks are shown as escapes; a line is cut
    to 200 characters; a huge one-line file costs the message no more than that."""
    hostile = "ok \x1b[2J\x1b[31mred\u202eevil\u200b\x07 tab\there\n"
    (tmp_path / "h.txt").write_text(hostile + "y" * 5_000_000)
    message = first_message("q", meta_of("h.txt"), FACTS)
    assert "1: ok \\x1b[2J\\x1b[31mred\\u202eevil\\u200b\\x07 tab\there" in message
    assert "2: " + "y" * 200 + "… [+4,999,800 chars]" in message
    assert not any(char in message for char in "\x1b\u202e\u200b\x07")
    assert len(message) < 3_000


def test_file_names_are_made_safe_too(tmp_path: Path) -> None:
    tree = tmp_path / "d"
    tree.mkdir()
    (tree / "evil\x1b[31m.txt").write_text("x\n")
    (tree / "fine.txt").write_text("y\n")
    message = first_message("q", meta_of("d"), FACTS)
    assert "- evil\\x1b[31m.txt (2 chars; 1 line)" in message


def test_many_files_are_capped_and_counted(tmp_path: Path) -> None:
    tree = tmp_path / "many"
    tree.mkdir()
    for n in range(130):
        (tree / f"f{n:03}.txt").write_text("a\nb\n")
    message = first_message("q", meta_of("many"), FACTS)
    assert "- f099.txt (4 chars; 2 lines)" in message
    assert "f100.txt" not in message
    assert "- ... and 30 more (list them with `list(context)`)" in message


def test_modules_beyond_the_standard_library_are_named() -> None:
    meta = {"type": "str", "chars": 1, "lines": 1, "python": "3.12.1", "modules": ["numpy"]}
    assert "Python 3.12.1, with the standard library and numpy." in first_message("q", meta, FACTS)


def test_budgets_and_depth_that_are_not_set() -> None:
    import dataclasses

    facts = dataclasses.replace(
        FACTS, max_subcalls=None, max_cost=None, timeout=None, recursive=True, max_depth=3
    )
    message = first_message("q", {"type": "str", "chars": 0}, facts)
    assert "- Budgets: none set." in message
    assert "- Depth: `rlm_query` may start child runs, 2 levels below this." in message

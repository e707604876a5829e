"""The views print the top run's input summary (RunStarted.summary), made safe, and only it."""

from __future__ import annotations

import io
from typing import Any

import pytest

from rlm_cli.events import RunStarted
from rlm_cli.ui.plain import PlainView
from rlm_cli.ui.tree import LiveTreeView

SUMMARY = "inputs: 3 files · 1.2 MB · ~300K tokens · est. cost $0.01–$0.05"
SANDBOX = {"mode": "process", "layers": {"seccomp": {"active": True, "detail": ""}}}


def started(summary: str | None, **fields: Any) -> RunStarted:
    return RunStarted(
        fields.pop("run_id", "r1"),
        question="q?",
        root_model="R",
        sub_model="W",
        inputs={"files": 3},
        context_meta={"chars": 10},
        settings={},
        sandbox=SANDBOX,
        summary=summary,
        **fields,
    )


def plain_lines(*events: RunStarted) -> list[str]:
    stream = io.StringIO()
    view = PlainView(stream)
    for event in events:
        view(event)
    return stream.getvalue().splitlines()


def test_plain_view_prints_the_summary_after_the_run_line() -> None:
    lines = plain_lines(started(SUMMARY))
    assert lines[0].startswith("rlm: run r1 · root R")
    assert lines[1] == f"rlm: {SUMMARY}"
    assert lines[2].startswith("rlm: sandbox process")


def test_no_summary_no_line() -> None:
    lines = plain_lines(started(None))
    assert len(lines) == 2 and lines[1].startswith("rlm: sandbox")
    # A child run's summary (the engine sets none) is never printed.
    child = started(SUMMARY, run_id="c1", depth=1, parent_run_id="r1", parent_cell=1)
    assert not any(SUMMARY in line for line in plain_lines(started(None), child))


@pytest.mark.parametrize("view", ["plain", "tree"])
def test_the_summary_is_terminal_safe(view: str) -> None:
    hostile = "inputs: 1 file\x1b]0;owned\x07 · \x1b[2Jcleared\nsecond line"
    stream = io.StringIO()
    if view == "plain":
        PlainView(stream)(started(hostile))
    else:
        tree = LiveTreeView(stream)
        tree(started(hostile))
        tree.close()
    text = stream.getvalue()
    assert "owned" not in text and "\x1b]" not in text and "\x1b[2J" not in text
    assert "cleared" in text


def test_the_live_tree_prints_the_summary_once_above_the_tree() -> None:
    stream = io.StringIO()
    tree = LiveTreeView(stream)
    tree(started(SUMMARY))
    tree.close()
    text = stream.getvalue()
    assert text.count(f"rlm: {SUMMARY}") == 1
    assert text.index(f"rlm: {SUMMARY}") < text.rindex("question")  # the final tree comes after


def test_the_live_tree_prints_nothing_more_without_a_summary() -> None:
    stream = io.StringIO()
    tree = LiveTreeView(stream)
    tree(started(None))
    tree.close()
    assert "rlm: " not in stream.getvalue()

"""The trace reader and exports, on traces of real runs: finished, failed, cut short and killed.

The HTML export is opened in headless Chromium and checked in the DOM the browser built.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conftest import ask_scripted, heavy_imports, repl, start_scripted, wait_until

from rlm_cli import RLM
from rlm_cli.errors import UsageError
from rlm_cli.events import (
    CellFinished,
    CellStarted,
    IterationStarted,
    RootReply,
    RunFinished,
    RunStarted,
    SubcallFinished,
    SubcallStarted,
)
from rlm_cli.providers.base import Completion, ModelRequest
from rlm_cli.providers.scripted import ScriptedProvider
from rlm_cli.trace.export import FORMATS, export, export_html, export_json
from rlm_cli.trace.highlight import highlight_python as highlight
from rlm_cli.trace.reader import Trace, iter_runs, iter_subcalls, load_trace, trajectory
from rlm_cli.trace.timeline import lanes
from rlm_cli.trace.writer import TraceWriter

TOKEN_KEYS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens")
WORKER = "scripted-worker"
ROOT = "scripted-root"
QUESTION = "Which chunk holds the <code> & the key?"


class SlowWorker(ScriptedProvider):
    """A scripted worker whose sub-calls take a little time, so a batch really overlaps."""

    async def complete(self, request: ModelRequest) -> Completion:
        if request.purpose == "sub":
            await asyncio.sleep(0.02 + len(request.messages[-1].content) % 5 * 0.005)
        return await super().complete(request)


SUB_RULES = [
    {"match": r"chunk (\d+):", "reply": r"summary of chunk \1"},
    {"match": "which", "reply": "chunk 7 holds <the key> & more"},
]


def batched_run(trace: Path) -> Any:
    """A three-iteration run: a look, a batch of 50 sub-calls, one more sub-call and FINAL_VAR."""
    root = [
        repl("print(len(context))\nprint(context[:80])", "Let me look first.\nIt is text."),
        repl(
            "chunks = [context[i:i + 100] for i in range(0, 5000, 100)]\n"
            "replies = llm_query_batched([f'chunk {i}: {c}' for i, c in enumerate(chunks)])\n"
            "print(len(replies), replies[0])",
            "Fan out over 50 chunks.",
        ),
        repl("best = llm_query('which chunk? ' + ' | '.join(replies))\nFINAL_VAR('best')"),
    ]
    rlm = RLM(
        root_provider=ScriptedProvider.from_data({"root": root, "sub": SUB_RULES}),
        worker_provider=SlowWorker.from_data({"root": [], "sub": SUB_RULES}),
        trace=str(trace),
        max_concurrency=8,
    )
    return rlm.completion("k" * 5000, QUESTION)


@pytest.fixture(scope="module")
def batched_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("batched") / "run.jsonl"
    result = batched_run(path)
    assert result.status == "ok" and result.subcalls == 51
    return path


def summary_of(path: Path) -> dict[str, Any]:
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["type"] == "run_finished"
    return dict(last)


def summed(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: sum(n[key] for n in nodes) for key in ("calls", *TOKEN_KEYS)}


# --- reading -------------------------------------------------------------------------------------


def test_load_trace_gives_the_header_and_typed_events(batched_trace: Path) -> None:
    trace = load_trace(batched_trace)
    assert trace.header["type"] == "trace_header" and trace.question == QUESTION
    assert isinstance(trace.events[0], RunStarted)
    assert isinstance(trace.events[-1], RunFinished)
    assert sum(isinstance(e, SubcallFinished) for e in trace.events) == 51
    assert trace.complete and not trace.truncated
    assert trace.main_run_id == trace.events[0].run_id


def test_trajectory_nests_iterations_cells_and_subcalls(batched_trace: Path) -> None:
    doc = trajectory(load_trace(batched_trace))
    summary = summary_of(batched_trace)
    run = doc["run"]
    assert doc["trajectory_version"] == 1 and doc["question"] == QUESTION
    assert doc["trace"]["complete"] and not doc["trace"]["truncated"]
    assert run["status"] == "ok" and run["answer"] == "chunk 7 holds <the key> & more"
    assert run["final_source"] == "FINAL_VAR"
    assert (run["root_model"], run["sub_model"]) == (ROOT, WORKER)
    assert run["counts"] == {"iterations": 3, "cells": 3, "subcalls": 51, "retries": 0}
    assert [n["iteration"] for n in run["iterations"]] == [1, 2, 3]
    assert all(n["status"] == "complete" for n in run["iterations"])
    first, second, third = run["iterations"]
    assert first["subcalls"] == 0 and first["cells"][0]["output"].startswith("5000\n")
    assert first["root"]["text"].startswith("Let me look first.")

    (cell,) = second["cells"]
    assert cell["status"] == "ok" and "llm_query_batched" in cell["code"]
    assert [c["subcall_id"] for c in cell["subcalls"]] == list(range(1, 51))
    assert cell["batches"] == [{"batch_id": 1, "size": 50, "done": 50, "failed": 0}]
    call = cell["subcalls"][7]
    assert call["prompt"].startswith("chunk 7: ") and call["reply"] == "summary of chunk 7"
    assert call["status"] == "ok" and call["usage"]["calls"] == 1
    assert call["start_ts"] <= call["end_ts"] and call["elapsed_s"] >= 0.02
    assert third["final"] == {
        "answer": run["answer"],
        "source": "FINAL_VAR",
        "ts": third["final"]["ts"],
    }
    assert third["cells"][0]["subcalls"][0]["batch_id"] is None
    assert run["usage"] == summary["usage"] and run["usage_source"] == "summary"


def test_subcall_usage_adds_up_to_the_summary(batched_trace: Path) -> None:
    doc = trajectory(load_trace(batched_trace))
    by_model = summary_of(batched_trace)["usage"]["by_model"]
    run = doc["run"]
    calls = list(iter_subcalls(run))
    assert len(calls) == 51
    sub_total = summed([c["usage"] for c in calls])
    assert sub_total == {k: by_model[WORKER][k] for k in ("calls", *TOKEN_KEYS)}
    roots = [n["root"]["usage"] for n in run["iterations"]]
    assert summed(roots) == {k: by_model[ROOT][k] for k in ("calls", *TOKEN_KEYS)}
    for node in run["iterations"]:
        cells = summed([c["usage"] for c in node["cells"]])
        assert summed([node["sub_usage"]]) == cells
        assert summed([node["usage"]]) == summed([node["root"]["usage"], node["sub_usage"]])
        assert node["usage"]["cost_usd"] == 0.0  # the scripted provider costs 0, known
    total = summed([n["usage"] for n in run["iterations"]])
    assert {k: total[k] for k in TOKEN_KEYS} == {k: run["usage"][k] for k in TOKEN_KEYS}


def test_export_json_is_the_trajectory(batched_trace: Path) -> None:
    trace = load_trace(batched_trace)
    text = export_json(trace)
    assert text.endswith("\n")
    assert json.loads(text) == json.loads(json.dumps(trajectory(trace)))
    assert export(trace, "json") == text and FORMATS == ("json", "html")
    with pytest.raises(ValueError, match="json, html"):
        export(trace, "pdf")


@pytest.mark.slow
def test_failed_run_from_the_cli(write_script: Callable[..., str], tmp_path: Path) -> None:
    """The script runs out of root replies: exit 5, and the trace says why."""
    script = write_script([repl("x = llm_query('hello')\nprint(x)")])
    data = tmp_path / "input.txt"
    data.write_text("some text")
    path = tmp_path / "failed.jsonl"
    proc = ask_scripted(script, "--trace", str(path), "--quiet", str(data), "what?")
    assert proc.returncode == 5, proc.stderr
    doc = trajectory(load_trace(path))
    run = doc["run"]
    assert doc["trace"]["complete"] and run["status"] == "error"
    assert "add more replies" in run["error"] and run["answer"] is None
    assert [n["iteration"] for n in run["iterations"]] == [1, 2]
    assert run["iterations"][1]["root"] is None  # the second root call never came back
    (call,) = iter_subcalls(run)
    assert call["reply"] == "ok" and call["status"] == "ok"


def test_run_that_failed_before_it_started(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    """A missing input: the trace is a header and a summary line with no run id."""
    path = tmp_path / "early.jsonl"
    proc = ask_scripted(
        write_script([repl("FINAL(1)")]),
        "--trace",
        str(path),
        str(tmp_path / "missing.txt"),
        "what?",
    )
    assert proc.returncode == 2, proc.stderr
    doc = trajectory(load_trace(path))
    run = doc["run"]
    assert run["status"] == "error" and run["error"] and run["iterations"] == []
    assert run["run_id"] is None and run["root_model"] == ROOT
    assert 'id="error"' in export_html(load_trace(path))


def cut_trace(source: Path, target: Path, drop_lines: int, cut_chars: int) -> None:
    """A copy of `source` without its last `drop_lines` lines, the new last line cut short by
    `cut_chars` bytes and its newline: what SIGKILL in the middle of a write leaves."""
    lines = source.read_bytes().split(b"\n")[:-1]
    kept = lines[: len(lines) - drop_lines]
    target.write_bytes(b"\n".join(kept[:-1]) + b"\n" + kept[-1][:-cut_chars])


def test_partial_trace_with_a_cut_last_line(batched_trace: Path, tmp_path: Path) -> None:
    lines = batched_trace.read_text().splitlines()
    # Keep everything up to the middle of the batch: 20 sub-calls finished at most.
    finished = [i for i, line in enumerate(lines) if '"subcall_finished"' in line]
    keep = finished[19] + 2
    path = tmp_path / "partial.jsonl"
    cut_trace(batched_trace, path, len(lines) - keep, 15)
    trace = load_trace(path)
    assert trace.truncated and not trace.complete
    doc = trajectory(trace)
    run = doc["run"]
    assert run["status"] == "incomplete" and run["usage_source"] == "events"
    assert run["answer"] is None and run["error"] is None
    assert [n["status"] for n in run["iterations"]] == ["complete", "unfinished"]
    (cell,) = run["iterations"][1]["cells"]
    assert cell["status"] == "unfinished" and cell["output"] is None and cell["end_ts"] is None
    statuses = [c["status"] for c in cell["subcalls"]]
    assert statuses.count("ok") == 20 and "unfinished" in statuses
    (batch,) = cell["batches"]
    assert batch["done"] == 20 and batch["size"] == 50
    done = [c for c in cell["subcalls"] if c["status"] == "ok"]
    assert run["usage"]["by_model"][WORKER]["calls"] == 20
    assert run["usage"]["by_model"][WORKER]["input_tokens"] == sum(
        c["usage"]["input_tokens"] for c in done
    )


def test_partial_trace_cut_inside_a_multibyte_character(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    provider = ScriptedProvider.from_data({"root": [repl("FINAL('ünïcödé ✓')")], "sub": []})
    RLM(root_provider=provider, trace=str(path)).completion("c", "q ✓✓✓")
    raw = path.read_bytes()
    cut = raw[: raw.rindex("✓".encode()) + 1]  # the last check mark's first byte only
    cut_path = tmp_path / "cut.jsonl"
    cut_path.write_bytes(cut)
    trace = load_trace(cut_path)
    assert trace.truncated and not trace.complete


def test_header_only_trace(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(str(path))
    writer.header("q?", {"root_model": "m", "worker_model": "w"}, None)
    writer.close()
    doc = trajectory(load_trace(path))
    assert doc["run"]["status"] == "incomplete" and doc["run"]["iterations"] == []
    assert doc["run"]["root_model"] == "m" and doc["question"] == "q?"
    page = export_html(load_trace(path))
    assert 'id="partial-note"' in page and "No sub-calls in this run." in page


@pytest.mark.slow
def test_trace_of_a_run_killed_with_sigkill(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = write_script(
        [
            repl("print('step one')"),
            repl("r = llm_query('first')\nprint(r, flush=True)\nimport time\ntime.sleep(20)"),
        ],
        [{"reply": "worker says hi"}],
    )
    data = tmp_path / "in.txt"
    data.write_text("text")
    trace = tmp_path / "killed.jsonl"
    proc = start_scripted(
        script,
        "--trace",
        str(trace),
        "--quiet",
        str(data),
        "q?",
        stdin=b"",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_until(lambda: trace.exists() and '"subcall_finished"' in trace.read_text()):
            pytest.fail("the run never got to its sub-call")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    doc = trajectory(load_trace(trace))
    run = doc["run"]
    assert run["status"] == "incomplete" and not doc["trace"]["complete"]
    assert [c["status"] for n in run["iterations"] for c in n["cells"]] == ["ok", "unfinished"]
    (call,) = iter_subcalls(run)
    assert call["reply"] == "worker says hi"
    assert run["usage"]["by_model"][WORKER]["calls"] == 1
    assert 'id="partial-note"' in export_html(load_trace(trace))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read the trace"),
        (b"", "not an rlm trace"),
        (b"root:\n  - hello\n", "not an rlm trace"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not an rlm trace"),
        (b'{"type": "run_started"}\n', "not an rlm trace"),
        (b'{"type": "trace_header", "format_version": 99}\n', "format version 99"),
        (b'{"type": "trace_header", "format_version": 1}\nnot json\n{}\n', "line 2 is not JSON"),
        (b'{"type": "trace_header", "format_version": 1}\n{"type": "cell_started"}\n', "line 2"),
    ],
)
def test_bad_paths_and_non_traces_are_usage_errors(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "what.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError) as caught:
        load_trace(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_a_directory_is_not_a_trace(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the trace"):
        load_trace(tmp_path)


def test_unknown_event_types_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(str(path))
    writer.header("q", {}, None)
    writer(
        RunStarted(
            "r1",
            question="q",
            root_model="a",
            sub_model="b",
            inputs={},
            context_meta={},
            settings={},
            ts=1.0,
        )
    )
    writer._write({"type": "from_the_future", "run_id": "r1", "ts": 2.0})
    writer.close()
    trace = load_trace(path)
    assert trace.unknown_lines == 1 and len(trace.events) == 1
    assert trajectory(trace)["trace"]["unknown_lines"] == 1


# --- child runs (recorded by hand: the engine does not start any yet) ----------------------------


def write_events(path: Path, events: list[Any], extra: dict[int, dict[str, Any]]) -> Trace:
    """A trace of these events through the real writer; `extra` adds fields to some lines, as a
    newer rlm would."""
    writer = TraceWriter(str(path))
    writer.header("parent question", {"root_model": "R", "worker_model": "W"}, None)
    for index, event in enumerate(events):
        writer._write({**event.to_json(), **extra.get(index, {})})
    writer.close()
    return load_trace(path)


def run_events(run_id: str, t: float, cells: list[int], **started: Any) -> list[Any]:
    usage = {"input_tokens": 10, "output_tokens": 2}
    events: list[Any] = [
        RunStarted(
            run_id,
            question=f"q {run_id}",
            root_model="R",
            sub_model="W",
            inputs={},
            context_meta={},
            settings={},
            ts=t,
            **started,
        ),
        IterationStarted(run_id, iteration=1, max_iterations=5, ts=t),
        RootReply(
            run_id,
            iteration=1,
            text="go",
            model="R",
            usage=usage,
            elapsed_s=0.1,
            code_blocks=len(cells),
            ts=t + 0.1,
            cost_usd=0.001,
        ),
    ]
    for k, cell in enumerate(cells):
        start = t + 0.2 + k
        events += [
            CellStarted(run_id, iteration=1, cell=cell, code="x = 1", ts=start),
            SubcallStarted(run_id, subcall_id=cell, cell=cell, model="W", prompt="p", ts=start),
            SubcallFinished(
                run_id,
                subcall_id=cell,
                cell=cell,
                model="W",
                reply="r",
                usage=usage,
                elapsed_s=0.1,
                ts=start + 0.1,
                cost_usd=None,
            ),
            CellFinished(
                run_id,
                iteration=1,
                cell=cell,
                output="",
                output_chars=0,
                error=False,
                elapsed_s=0.9,
                ts=start + 0.9,
            ),
        ]
    return events


def test_child_runs_nest_under_the_cell_that_started_them(tmp_path: Path) -> None:
    parent = run_events("parent", 100.0, [1, 2])  # cell 1 runs 100.2-101.1, cell 2 101.2-102.1
    by_time = run_events("bytime", 101.5, [1], parent_run_id="parent", depth=1)
    named = run_events("named", 101.6, [1], parent_run_id="parent", depth=1)
    grandchild = run_events("grand", 101.9, [1], parent_run_id="named", depth=2)
    orphan = run_events("orphan", 200.0, [1], parent_run_id="parent", depth=1)
    # Events of the children interleave with the parent's, as they would in a real run.
    events = parent[:8] + by_time + named + grandchild + parent[8:] + orphan
    named_index = len(parent[:8] + by_time)
    trace = write_events(tmp_path / "t.jsonl", events, {named_index: {"parent_cell": 1}})
    run = trajectory(trace)["run"]
    assert run["run_id"] == "parent"
    cells = {c["cell"]: c for c in run["iterations"][0]["cells"]}
    assert [c["run_id"] for c in cells[1]["children"]] == ["named"]
    assert [c["run_id"] for c in cells[2]["children"]] == ["bytime"]
    assert [c["run_id"] for c in run["children"]] == ["orphan"]  # started in no cell
    (named_run,) = cells[1]["children"]
    assert named_run["depth"] == 1 and named_run["parent_cell"] == 1
    assert [c["run_id"] for c in named_run["iterations"][0]["cells"][0]["children"]] == ["grand"]
    assert [r["run_id"] for r in iter_runs(run)] == ["parent", "named", "grand", "bytime", "orphan"]
    # A child's calls are its own: not counted in the parent's iterations.
    assert run["iterations"][0]["subcalls"] == 2 and len(list(iter_subcalls(run))) == 6
    # No summary and no cost on sub-call lines: the cost is unknown, never 0.
    assert run["iterations"][0]["root"]["usage"]["cost_usd"] == 0.001
    assert run["iterations"][0]["usage"]["cost_usd"] is None
    page = export_html(trace)
    assert page.count('class="run child-run"') == 4
    assert 'id="grand-subcall-1"' in page and 'id="subcall-2"' in page


# --- HTML ----------------------------------------------------------------------------------------


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs = tag, attrs
        self.children: list[Element] = []
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            yield from child.iter()

    def by_id(self, ident: str) -> Element:
        found = [e for e in self.iter() if e.attrs.get("id") == ident]
        assert len(found) == 1, f"{len(found)} elements with id {ident!r}"
        return found[0]

    def by_class(self, name: str, tag: str | None = None) -> list[Element]:
        return [e for e in self.iter() if name in e.classes and tag in (None, e.tag)]


class Dom(HTMLParser):
    """Just enough of a DOM: elements, their attributes and their text (with descendants')."""

    VOID = frozenset({"meta", "br", "hr", "img", "input", "link", "line", "source", "wbr"})

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.parts.append(data)


def test_highlighter_escapes_and_survives_broken_code() -> None:
    out = highlight("if x < 3:  # '</pre>'\n    y = llm_query(\"<b>\")\n")
    assert '<span class="k">if</span>' in out and "</pre>" not in out
    # The comment is one span, its text escaped (pygments 2.21 stopped escaping quotes in text,
    # which is safe there: only <, > and & matter outside attributes).
    comment = re.search(r'<span class="c1">(.*?)</span>', out)
    assert comment is not None and html.unescape(comment.group(1)) == "# '</pre>'"
    assert '<span class="n rlm">llm_query</span>' in out and "&lt;b&gt;" in out
    assert out.endswith("</span>\n")  # the code's own last newline, and no other
    # Every REPL name the worker binds is marked (the names come from the worker's protocol).
    for name in ("rlm_query", "rlm_query_batched", "FINAL_VAR", "SHOW_VARS", "context"):
        assert f'<span class="n rlm">{name}</span>' in highlight(f"{name}(1)"), name
    code = 'print("unterminated\n  <i> x = ('
    broken = highlight(code)
    assert broken.startswith('<span class="nb">print</span>') and "<i>" not in broken
    # Every character is kept, escaped: without the spans it is the code again.
    assert html.unescape(re.sub(r"</?span[^>]*>", "", broken)) == code
    assert highlight("") == ""


def test_lanes_stack_only_calls_in_flight_together() -> None:
    chosen, count = lanes([(0, 2), (1, 3), (2, 4), (2.5, 3), (5, 6)])
    assert count == 3  # at t=2.5: the 2nd, 3rd and 4th
    assert chosen == [0, 1, 0, 2, 0]


def test_html_escapes_every_piece_of_trace_text(tmp_path: Path) -> None:
    evil = "<script>alert(1)</script>"
    path = tmp_path / "t.jsonl"
    provider = ScriptedProvider.from_data(
        {
            "root": [repl(f"r = llm_query('{evil}')\nFINAL('</pre>{evil}')", f"I say {evil}")],
            "sub": [{"reply": f"<img src=x onerror=alert(1)> {evil}"}],
        }
    )
    RLM(root_provider=provider, trace=str(path)).completion("c", f"why {evil}?")
    page = export_html(load_trace(path))
    assert evil not in page and "<img" not in page
    assert page.count("<script>") == 1  # the page's own
    dom = Dom(page).root
    assert dom.by_id("question").text == f"why {evil}?"
    assert dom.by_id("answer").text == f"</pre>{evil}"
    assert f"<img src=x onerror=alert(1)> {evil}" in dom.by_class("reply")[0].text
    # Nothing is fetched from anywhere: no external references at all.
    for element in dom.iter():
        for name in ("src", "href", "xmlns"):
            value = element.attrs.get(name, "")
            assert not value or value.startswith("#"), (element.tag, name, value)
    for tag in ("style", "script"):
        (code,) = [e.text for e in dom.iter() if e.tag == tag]
        for needle in ("url(", "@import", "http", "fetch(", "XMLHttpRequest", "//cdn"):
            assert needle not in code, (tag, needle)


def chromium_dom(page: Path, tmp_path: Path) -> Element:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run does)")
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    return Dom(proc.stdout).root


@pytest.mark.slow
def test_html_export_in_chromium(batched_trace: Path, tmp_path: Path) -> None:
    page = tmp_path / "run.html"
    page.write_text(export_html(load_trace(batched_trace)), encoding="utf-8")
    dom = chromium_dom(page, tmp_path)
    body = next(e for e in dom.iter() if e.tag == "body")
    assert body.attrs.get("data-ready") == "yes"  # the inline script ran without an error

    assert dom.by_id("question").text == QUESTION
    assert dom.by_id("answer").text == "chunk 7 holds <the key> & more"
    assert dom.by_id("status").text == "ok"
    assert ROOT in dom.by_id("models").text and WORKER in dom.by_id("models").text

    iterations = dom.by_class("iteration", "details")
    assert [e.attrs["id"] for e in iterations] == ["iteration-1", "iteration-2", "iteration-3"]
    assert "Fan out over 50 chunks." in iterations[1].text
    rows = dom.by_class("iteration-row", "tr")
    assert [r.attrs["data-iteration"] for r in rows] == ["1", "2", "3"]
    assert "51" in dom.by_id("usage-total").text

    timeline = dom.by_id("timeline")
    bars = timeline.by_class("subcall-bar", "rect")
    assert len(bars) == 51 and timeline.attrs["data-subcalls"] == "51"
    # The batch ran 8 at a time (max_concurrency): the bars stack in 8 lanes, no more.
    lanes = int(timeline.attrs["data-lanes"])
    assert 2 <= lanes <= 8 and {int(b.attrs["data-lane"]) for b in bars} == set(range(lanes))
    for bar in bars:
        target = dom.by_id(bar.attrs["data-target"])
        assert (
            "subcall" in target.classes
            and target.attrs["data-subcall"] == bar.attrs["data-subcall"]
        )

    batch = dom.by_id("batch-1")
    assert len(batch.by_class("subcall", "details")) == 50
    assert "summary of chunk 7" in dom.by_id("subcall-8").text
    code = dom.by_id("cell-2").by_class("code")[0]
    assert "llm_query_batched" in code.text and code.by_class("rlm")


@pytest.mark.slow
def test_failed_and_partial_traces_render_in_chromium(
    batched_trace: Path, write_script: Callable[..., str], tmp_path: Path
) -> None:
    failed = tmp_path / "failed.jsonl"
    script = write_script([repl("print('one')")])
    data = tmp_path / "in.txt"
    data.write_text("text")
    ask_scripted(script, "--trace", str(failed), "--quiet", str(data), "q?")
    partial = tmp_path / "partial.jsonl"
    lines = len(batched_trace.read_text().splitlines())
    cut_trace(batched_trace, partial, lines // 2, 7)

    page = tmp_path / "failed.html"
    page.write_text(export_html(load_trace(failed)), encoding="utf-8")
    dom = chromium_dom(page, tmp_path)
    assert dom.by_id("status").text == "error"
    assert "add more replies" in dom.by_id("error").text
    assert "No answer" in dom.by_id("answer").text
    assert len(dom.by_class("iteration", "details")) == 2
    assert dom.by_id("timeline").attrs["data-subcalls"] == "0"

    page = tmp_path / "partial.html"
    page.write_text(export_html(load_trace(partial)), encoding="utf-8")
    dom = chromium_dom(page, tmp_path)
    assert dom.by_id("status").text == "incomplete"
    assert "cut off mid-write" in dom.by_id("partial-note").text
    assert dom.by_id("question").text == QUESTION
    assert dom.by_class("iteration", "details")
    bars = dom.by_id("timeline").by_class("subcall-bar", "rect")
    assert 0 < len(bars) <= 50


def test_trace_package_imports_no_ui_or_sdk() -> None:
    assert heavy_imports("import rlm_cli.trace.reader, rlm_cli.trace.export") == []

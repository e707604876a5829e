"""Nothing from a run reaches the terminal raw: `terminal_safe`, and every view that draws run text."""

from __future__ import annotations

import io
import os
import pty
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ask_scripted, invoke_rlm, read_pty, repl, start_scripted
from rich.console import Console

from rlm_cli.events import (
    CellFinished,
    CellStarted,
    Event,
    FinalAnswer,
    IterationStarted,
    Retry,
    RootReply,
    RootTextDelta,
    RunFinished,
    RunStarted,
    SubcallFinished,
    SubcallStarted,
)
from rlm_cli.ui.model import RunTree
from rlm_cli.ui.plain import PlainView
from rlm_cli.ui.safe import terminal_safe
from rlm_cli.ui.tree import render

# Every character a terminal could act on, written out here rather than taken from the module.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# What a run injects below; Rich's own drawing (SGR colours, erase line, cursor up) uses none.
INJECTED = (
    "\x1b]",  # OSC: title (0, 2), clipboard (52), hyperlinks
    "\x1b[2J",  # clear screen
    "\x1b[5;1H",  # cursor position
    "\x1bP",  # DCS
    "\x1b_",  # APC
    "\x07",
    "\x08",
    "\u202e",
    "\u2066",
)
C1 = re.compile("[\x80-\x9f]")

# One of each, with a marker letter between them so the result is easy to read.
PAYLOAD = (
    "A\x1b]0;title0\x07B\x1b]2;title2\x1b\\C\x1b]52;c;cGF5bG9hZA==\x07D\x1b[2JE\x1b[5;1HF"
    "\x1bPq#0;2;0\x1b\\G\x1b_apc\x1b\\H\x1bcI\x1b(BJ\x9b2JK\x9d0;c1\x9cL\x1béM\x07N\x08O\rP"
    "\u202eQ\u2066R\x00S\x7fT"
)


def assert_clean(text: str) -> None:
    """No control character at all but newline and tab (a view drawn without colour)."""
    found = CONTROL.search(text)
    if found is not None:
        near = text[max(found.start() - 40, 0) : found.start() + 40]
        pytest.fail(f"{found.group()!r} at {found.start()} in {near!r}")


def assert_not_injected(screen: str) -> None:
    """None of the run's sequences, though the terminal view's own escapes may be there."""
    for marker in INJECTED:
        assert marker not in screen, repr(marker)
    assert C1.search(screen) is None


# ----- the function -----


def test_each_kind_of_sequence_and_control() -> None:
    assert terminal_safe(PAYLOAD) == (
        "ABCDEFGHIJ<U+009B>2JK<U+009D>0;c1<U+009C>L^[éM^GN^HO^MP<U+202E>Q<U+2066>R^@S^?T"
    )


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("\x1b[31mred\x1b[0m", "red"),  # SGR
        ("\x1b[?25l\x1b[1;31;40m", ""),  # private parameters
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC 8 hyperlink
        ("\x1b]0;t", "^[]0;t"),  # no terminator: the ESC is shown, the rest is text
        ("\x1b]0;a\nb\x07", "^[]0;a\nb^G"),  # a control inside: not a sequence
        ("\x1b[", "^[["),
        ("\x1b", "^["),
        ("\x1bX sos \x1b\\", ""),  # SOS
        ("\x1b^ pm \x1b\\", ""),  # PM
        ("\x1b7saved\x1b8", "saved"),  # two-character sequences
        ("\x1b#8", ""),  # nF: DEC screen alignment (fills the screen with E)
        ("line\r\nnext\r\n", "line\nnext\n"),  # CR LF is a line break
        ("50%\r100%", "50%^M100%"),  # a lone CR would overwrite the line
        ("\x85\x9c", "<U+0085><U+009C>"),  # C1: NEL, ST
        (
            "\u202a\u202b\u202c\u202d\u2067\u2068\u2069",
            "<U+202A><U+202B><U+202C><U+202D><U+2067><U+2068><U+2069>",
        ),
    ],
)
def test_sequences(raw: str, safe: str) -> None:
    assert terminal_safe(raw) == safe


def test_ordinary_text_is_kept() -> None:
    text = (
        "café naïve Ærøskøbing\tcolumn\n日本語のテキスト 한국어 中文\n"
        "emoji 😀 👍🏽 👨‍👩‍👧 🇫🇷 e\u0301 (a combining accent)\nالعربية עברית\n\u00a0\u2028€ — “quotes”\n"
    )
    assert terminal_safe(text) is text  # the fast path: the same object back
    assert terminal_safe(text + "\x1b[2J") == text


def test_linear_on_unterminated_and_repeated_introducers() -> None:
    # Each would take minutes if the regex backtracked quadratically; linear, they take well
    # under a second together. Checked by the result, not by timing.
    for raw, each in (
        ("\x1b]" * 100_000, "^[]"),
        ("\x1bP" * 100_000, "^[P"),
        ("\x1b[" * 100_000, "^[["),
        ("\x9d" * 100_000, "<U+009D>"),
        ("\x1b" * 100_000, "^["),
    ):
        assert terminal_safe(raw) == each * 100_000
    long_body = "\x1b]0;" + "x" * 1_000_000  # no terminator, a megabyte long
    assert terminal_safe(long_body) == "^[" + long_body[1:]
    params = "\x1b[" + "1;" * 500_000  # no final byte
    assert terminal_safe(params) == "^[" + params[1:]


def test_megabytes_of_plain_text() -> None:
    text = "The quick brown fox jumps over the lazy dog.\n" * 100_000  # 4.5 MB
    started = time.perf_counter()
    assert terminal_safe(text) is text
    assert terminal_safe(text + "\x1b[0m") == text
    assert time.perf_counter() - started < 5  # generous: it takes milliseconds


# ----- the views, fed events directly -----


def hostile_events() -> list[Event]:
    """A run whose every piece of text carries the payload, with a child run."""
    run, child = "run1", "run2"
    return [
        RunStarted(
            run_id=run,
            question=f"q {PAYLOAD} [red]markup[/red]",
            root_model=f"root{PAYLOAD}",
            sub_model=f"sub{PAYLOAD}",
            inputs={"files": 1, "estimated_tokens": 10},
            context_meta={"chars": 100},
            settings={"max_iterations": 5},
            ts=1000.0,
        ),
        IterationStarted(run_id=run, iteration=1, max_iterations=5, last_turn=False, ts=1000.1),
        RootTextDelta(run_id=run, iteration=1, text=f"prose {PAYLOAD}\n", ts=1000.2),
        RootReply(
            run_id=run,
            iteration=1,
            text=f"prose {PAYLOAD}\n```repl\nprint(1)  # {PAYLOAD}\n```\n",
            model="root",
            usage={"input_tokens": 10, "output_tokens": 5},
            elapsed_s=0.1,
            code_blocks=1,
            cost_usd=0.0,
            ts=1000.3,
        ),
        CellStarted(run_id=run, iteration=1, cell=1, code=f"print(1)  # {PAYLOAD}", ts=1000.4),
        SubcallStarted(
            run_id=run,
            cell=1,
            subcall_id=1,
            model=f"sub{PAYLOAD}",
            prompt=f"prompt {PAYLOAD}",
            ts=1000.5,
        ),
        Retry(
            run_id=run,
            purpose="subcall",
            model=f"sub{PAYLOAD}",
            attempt=1,
            delay_s=0.5,
            reason=f"429 {PAYLOAD}",
            ts=1000.55,
        ),
        SubcallFinished(
            run_id=run,
            cell=1,
            subcall_id=1,
            model=f"sub{PAYLOAD}",
            reply=f"reply {PAYLOAD}",
            usage={"input_tokens": 3, "output_tokens": 3},
            elapsed_s=0.1,
            cost_usd=0.0,
            ts=1000.6,
        ),
        SubcallStarted(
            run_id=run,
            cell=1,
            subcall_id=2,
            model="sub",
            prompt="p",
            batch_id=1,
            batch_size=1,
            ts=1000.6,
        ),
        SubcallFinished(
            run_id=run,
            cell=1,
            subcall_id=2,
            model="sub",
            reply="",
            usage={},
            elapsed_s=0.1,
            error=f"failed {PAYLOAD}",
            batch_id=1,
            ts=1000.65,
        ),
        RunStarted(
            run_id=child,
            question=f"child {PAYLOAD}",
            root_model="root",
            sub_model="sub",
            inputs={},
            context_meta={},
            settings={},
            depth=1,
            parent_run_id=run,
            parent_cell=1,
            ts=1000.7,
        ),
        FinalAnswer(
            run_id=child, iteration=1, answer=f"child answer {PAYLOAD}", source="FINAL", ts=1000.8
        ),
        RunFinished(
            run_id=child,
            status="ok",
            answer=f"child answer {PAYLOAD}",
            iterations=1,
            subcalls=0,
            usage={},
            elapsed_s=0.1,
            ts=1000.8,
        ),
        CellFinished(
            run_id=run,
            iteration=1,
            cell=1,
            output=f"out {PAYLOAD}\nTraceback ...\nValueError: {PAYLOAD}\n",
            output_chars=200,
            elapsed_s=0.5,
            error=True,
            ts=1000.9,
        ),
        FinalAnswer(run_id=run, iteration=1, answer=f"answer {PAYLOAD}", source="FINAL", ts=1001.0),
        RunFinished(
            run_id=run,
            status="ok",
            answer=f"answer {PAYLOAD}",
            iterations=1,
            subcalls=2,
            usage={"input_tokens": 13, "output_tokens": 8, "cost_usd": 0.0},
            elapsed_s=1.0,
            error=f"an error {PAYLOAD}",
            ts=1001.0,
        ),
    ]


@pytest.mark.parametrize("options", [{}, {"expanded": True}, {"only_iteration": 1}])
@pytest.mark.parametrize("full_text", [False, True])
def test_tree_draws_no_control_characters(options: dict[str, object], full_text: bool) -> None:
    run = RunTree(full_text=full_text)
    for event in hostile_events():
        run.apply(event)
    console = Console(file=io.StringIO(), width=200, color_system=None, record=True)
    console.print(render(run, now=1001.0, **options))  # type: ignore[arg-type]
    text = console.export_text()
    assert_clean(text)
    shown = ["prose ABCDEFGHIJ", "answer answer ABCDEFGHIJ"]  # finished: iterations collapse
    if options:  # open: every piece of run text is drawn, made safe
        shown += ["reply ABCDEFGHIJ", "ValueError: ABCDEFGHIJ", "child answer ABCDEFGHIJ"]
    for expected in shown:
        assert expected in text, expected
    assert "[red]markup[/red]" in text  # run text is drawn as text, never parsed as markup


def test_tree_streaming_prose_is_safe() -> None:
    run = RunTree()
    for event in hostile_events()[:3]:  # still streaming: no reply yet
        run.apply(event)
    console = Console(file=io.StringIO(), width=200, color_system=None, record=True)
    console.print(render(run, now=1000.2))
    assert_clean(console.export_text())


def test_plain_view_writes_no_control_characters() -> None:
    stream = io.StringIO()
    view = PlainView(stream)
    for event in hostile_events():
        view(event)
    text = stream.getvalue()
    assert_clean(text)
    assert "ValueError: ABCDEFGHIJ" in text and "429 ABCDEFGHIJ" in text


# ----- end to end, through the real CLI -----

# Written into cells as Python escapes, so the cell's output and the answer hold the real
# characters; the root's prose, a comment in the code and the sub-call reply hold them raw.
PY_PAYLOAD = PAYLOAD.encode("unicode_escape").decode("ascii").replace("'", "\\'")


def hostile_script(write_script: Callable[..., str]) -> str:
    return write_script(
        [
            repl(
                f"print('cell {PY_PAYLOAD}')\n"
                "r = llm_query('tell me')\n"
                "b = llm_query_batched(['one', 'two'])\n"
                f"print(len(r), len(b))  # {PAYLOAD}",
                f"Root prose {PAYLOAD} here.",
            ),
            repl(f"raise ValueError('bad {PY_PAYLOAD}')", f"Second {PAYLOAD}"),
            repl(f"FINAL('answer {PY_PAYLOAD}')"),
        ],
        sub=[{"reply": f"sub reply {PAYLOAD}"}],
    )


@pytest.mark.slow
def test_plain_view_end_to_end(write_script: Callable[..., str]) -> None:
    proc = ask_scripted(hostile_script(write_script), "--view", "plain", "q?", stdin=b"text")
    assert proc.returncode == 0, proc.stderr
    stderr = proc.stderr.decode("utf-8")
    assert_clean(stderr)
    assert "Root prose ABCDEFGHIJ" in stderr  # the prose is there, made safe
    assert "ValueError: bad ABCDEFGHIJ" in stderr  # and the exception's last line
    # Piped, the answer is written exactly, escapes and all: scripts rely on it.
    assert proc.stdout == f"answer {PAYLOAD}\n".encode()


@pytest.mark.slow
def test_tree_and_answer_on_a_terminal(write_script: Callable[..., str]) -> None:
    leader, follower = pty.openpty()
    proc = start_scripted(
        hostile_script(write_script),
        "q?",
        stdin=b"some text",
        stdout=follower,  # the answer goes to the terminal too
        stderr=follower,
        env={**os.environ, "COLUMNS": "160", "LINES": "60", "TERM": "xterm-256color"},
    )
    os.close(follower)
    screen = read_pty(leader, proc).decode("utf-8", "replace")
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    assert "\x1b[" in screen and "iteration" in screen  # the live tree was drawn
    assert "answer ABCDEFGHIJ" in screen  # the answer was written, made safe
    assert_not_injected(screen)


@pytest.mark.slow
def test_trace_show_of_a_hostile_run(write_script: Callable[..., str], tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    proc = ask_scripted(
        hostile_script(write_script), "-q", "--trace", str(trace), "q?", stdin=b"text"
    )
    assert proc.returncode == 0, proc.stderr
    assert b"\\u001b]52;" in trace.read_bytes()  # the trace keeps the run as it was
    for args in ([], ["--iteration", "1"], ["--iteration", "2"]):
        shown = invoke_rlm("trace", "show", str(trace), *args, env={"COLUMNS": "160"})
        assert shown.exit_code == 0, shown.stderr
        out = shown.stdout_bytes.decode("utf-8")
        assert_clean(out)  # not a terminal: no colour, so no escape at all
        assert "ABCDEFGHIJ" in out
    shown = invoke_rlm("trace", "show", str(trace), env={"COLUMNS": "160", "FORCE_COLOR": "1"})
    out = shown.stdout_bytes.decode("utf-8")
    assert "\x1b[" in out  # coloured, as on a terminal
    assert_not_injected(out)

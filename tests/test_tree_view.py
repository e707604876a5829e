"""The tree view: snapshots of a recorded run, and the live view under a real pseudo-terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ask_scripted, read_pty, repl, run_rlm, start_scripted
from rich.console import Console

from rlm_cli.events import CellFinished, Event, event_from_json
from rlm_cli.ui.model import RunTree
from rlm_cli.ui.tree import render

DATA = Path(__file__).parent / "data"
SNAPSHOTS = Path(__file__).parent / "snapshots"
WIDTH = 100


def recorded_events() -> list[Event]:
    lines = (DATA / "recorded_run.jsonl").read_text().splitlines()
    events = [event_from_json(json.loads(line)) for line in lines]
    return [e for e in events if e is not None]


def draw(run: RunTree, **options: object) -> str:
    console = Console(file=io.StringIO(), width=WIDTH, color_system=None, record=True)
    console.print(render(run, now=1000.5, **options))  # type: ignore[arg-type]
    return console.export_text()


def check_snapshot(name: str, text: str) -> None:
    """`text` is the snapshot `name`; UPDATE_SNAPSHOTS=1 writes it instead. A missing snapshot
    fails: written on the fly, a deleted one would pass."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.write_text(text)
    assert path.exists(), f"no snapshot {name}; run with UPDATE_SNAPSHOTS=1 to write it"
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_SNAPSHOTS=1 if intended"


def test_snapshot_of_a_finished_run() -> None:
    run = RunTree()
    for event in recorded_events():
        run.apply(event)
    check_snapshot("finished.txt", draw(run))


def test_snapshot_of_a_run_in_the_middle_of_a_batch() -> None:
    run = RunTree()
    # The recorded (instant) run finished each sub-call right after starting it; replay it as
    # a live run would look with 5 of the batch's 10 calls still in flight.
    finished = 0
    for event in recorded_events():
        if event.type == "subcall_finished":
            finished += 1
            if finished > 5:
                continue
        if isinstance(event, CellFinished) and event.cell == 2:
            break
        run.apply(event)
    text = draw(run)
    assert "5/10 done, 5 in flight" in text
    check_snapshot("mid_batch.txt", text)


def test_snapshot_expanded_and_one_iteration() -> None:
    run = RunTree()
    for event in recorded_events():
        run.apply(event)
    check_snapshot("expanded.txt", draw(run, expanded=True))
    one = draw(run, only_iteration=2)
    assert "Count ERROR lines in:" in one and "iteration 3" not in one
    check_snapshot("iteration_2.txt", one)


@pytest.mark.slow
def test_live_tree_under_a_pty(write_script: Callable[..., str], tmp_path: Path) -> None:
    script = write_script(
        [
            repl("print(len(context))", "Look first."),
            repl(
                "import time\nr = llm_query_batched([f'item {i}' for i in range(20)])\ntime.sleep(0.3)"
            ),
            repl("FINAL('twenty')"),
        ]
    )
    leader, follower = pty.openpty()
    proc = start_scripted(
        script,
        "q?",
        stdin=b"some text",
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "COLUMNS": "100", "LINES": "40", "TERM": "xterm-256color"},
    )
    os.close(follower)
    assert proc.stdin is not None and proc.stdout is not None
    screen = read_pty(leader, proc).decode("utf-8", "replace")
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    assert proc.stdout.read() == b"twenty\n"  # stdout holds only the answer
    assert "\x1b[" in screen  # drawn with terminal control codes: a live view, not plain lines
    for expected in (
        "question",
        "iteration",
        "llm_query_batched",
        "20/20 done",
        "sub-calls 20 done",
    ):
        assert expected in screen, expected
    assert "rlm: iteration" not in screen


@pytest.mark.slow
def test_plain_lines_when_stderr_is_a_file(write_script: Callable[..., str]) -> None:
    script = write_script([repl("FINAL('x')")])
    proc = ask_scripted(script, "q?", stdin=b"text")
    assert proc.stdout == b"x\n"
    assert proc.stderr.startswith(b"rlm: run ") and b"\x1b[" not in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("view", ["none", "plain"])
def test_view_flag(write_script: Callable[..., str], view: str) -> None:
    script = write_script([repl("FINAL('x')")])
    proc = ask_scripted(script, "--view", view, "q?", stdin=b"text")
    assert proc.stdout == b"x\n"
    assert (proc.stderr == b"") == (view == "none")


def test_bad_view_is_a_usage_error() -> None:
    proc = run_rlm("ask", "--view", "fancy", "q?", stdin=b"text")
    assert proc.returncode == 2
    assert b"--view" in proc.stderr


def tree_to_file(script: str, env: dict[str, str]) -> str:
    """The tree view's output with stderr a file; an empty value in `env` unsets that variable."""
    proc = ask_scripted(
        script,
        "--view",
        "tree",
        "a question that is long enough to need wrapping at sixty columns?",
        stdin=b"text",
        env={name: value or None for name, value in env.items()},
    )
    assert proc.stdout == b"x\n"
    return proc.stderr.decode()


@pytest.mark.slow
def test_color_and_width_follow_the_environment(write_script: Callable[..., str]) -> None:
    script = write_script([repl("FINAL('x')")])
    plain = tree_to_file(script, {"FORCE_COLOR": "", "NO_COLOR": "", "COLUMNS": "60"})
    assert "\x1b[" not in plain and "iteration 1" in plain
    assert max(len(line) for line in plain.splitlines() if not line.startswith("rlm: ")) <= 60
    assert "\x1b[" in tree_to_file(script, {"FORCE_COLOR": "1", "NO_COLOR": ""})
    no_color = tree_to_file(script, {"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert "\x1b[3" not in no_color  # no colour codes (cursor movement may remain)


def test_a_cells_output_stays_in_sight_while_the_next_root_reply_streams() -> None:
    """Issue 10, case 5: an iteration folded to one line the moment the next root call began,
    so a user never saw what its code printed."""
    from rlm_cli.events import IterationStarted

    events = recorded_events()
    second = next(
        i for i, e in enumerate(events) if isinstance(e, IterationStarted) and e.iteration == 2
    )
    output = next(e.output for e in events[:second] if isinstance(e, CellFinished))
    run = RunTree()
    for event in events[: second + 1]:
        run.apply(event)
    assert output.strip().splitlines()[0][:40] in draw(run)

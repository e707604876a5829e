"""Runs that end badly: stray child processes, a dying host, garbled frames, odd bytes. Real
processes killed, crashed and waited on: marked slow, out of the quick subset."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ask_scripted,
    invoke_scripted,
    process_tree,
    processes_with,
    read_trace,
    repl,
    start_scripted,
    wait_until,
)

from rlm_cli import RLM
from rlm_cli.events import SubcallFinished
from rlm_cli.providers.base import Completion, ModelRequest, TextCallback
from rlm_cli.providers.scripted import ScriptedProvider, SubRule


def ask(script: str, *extra: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return ask_scripted(script, *extra, "q?", stdin=b"text", timeout=timeout)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is as good as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, seconds: float = 10) -> bool:
    return wait_until(lambda: not pid_alive(pid), timeout=seconds)


@pytest.mark.slow
def test_a_detached_child_of_a_cell_does_not_hold_the_run(write_script: Callable[..., str]) -> None:
    script = write_script(
        [
            repl(
                "import subprocess\nsubprocess.Popen(['sleep', '30'], start_new_session=True)\nFINAL('done')"
            )
        ]
    )
    started = time.monotonic()
    proc = ask(script)
    assert proc.returncode == 0 and proc.stdout == b"done\n"
    assert time.monotonic() - started < 15


@pytest.mark.slow
def test_a_worker_dying_with_a_child_is_noticed_at_once(write_script: Callable[..., str]) -> None:
    script = write_script(
        [
            repl("import os, subprocess\nsubprocess.Popen(['sleep', '30'])\nos._exit(3)"),
            repl("FINAL('recovered')"),
        ]
    )
    started = time.monotonic()
    proc = ask(script, "--cell-timeout", "20")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"recovered\n"
    assert time.monotonic() - started < 15


def start_spinning(
    write_script: Callable[..., str], tmp_path: Path
) -> tuple[subprocess.Popen[bytes], list[int], Path]:
    """An `rlm ask` whose cell spins forever; returns it, its processes, and the trace path."""
    script = write_script([repl("while True: pass")])
    trace = tmp_path / "t.jsonl"
    proc = start_scripted(
        script,
        "--trace",
        str(trace),
        "--json",
        "q?",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: trace.exists() and '"cell_started"' in trace.read_text())
    return proc, process_tree(proc.pid), trace


@pytest.mark.slow
def test_sigterm_ends_the_run_and_its_worker(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    proc, workers, trace = start_spinning(write_script, tmp_path)
    assert workers
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    assert proc.stdout is not None
    data = json.loads(proc.stdout.read())
    assert data["status"] == "interrupted" and data["iterations"] == 1
    assert read_trace(trace)[-1]["status"] == "interrupted"
    assert all(wait_gone(pid) for pid in workers)


@pytest.mark.slow
def test_a_killed_host_takes_its_worker_along(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    proc, workers, _trace = start_spinning(write_script, tmp_path)
    assert workers
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=20)
    assert all(wait_gone(pid) for pid in workers)


@pytest.mark.slow
def test_a_garbled_frame_replaces_the_worker(write_script: Callable[..., str]) -> None:
    garble = (
        "import os, fcntl, stat\n"
        "for fd in range(3, 32):\n"
        "    try:\n"
        "        if stat.S_ISFIFO(os.fstat(fd).st_mode) and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:\n"
        "            os.write(fd, b'\\x00\\x00\\x00\\x02{}')\n"
        "    except OSError:\n"
        "        pass\n"
        "import time; time.sleep(5)"
    )
    script = write_script([repl(garble), repl("FINAL(context)")])
    proc = ask(script, "--cell-timeout", "30")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"text\n"
    assert b"worker restarted" in proc.stderr


def test_a_final_line_inside_failed_code_is_not_the_last_turn_answer(
    write_script: Callable[..., str],
) -> None:
    script = write_script([repl("x = 1"), repl("result = 1/0\nFINAL(result)")])
    proc = invoke_scripted(script, "--max-iterations", "1", "--json", "q?", stdin=b"text")
    assert proc.exit_code == 6
    assert json.loads(proc.stdout)["answer"] != "result"


@pytest.mark.slow
def test_file_names_and_questions_that_are_not_utf8(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    name = os.fsdecode(b"caf\xe9.txt")  # Latin-1 bytes: a surrogate-escaped str
    (tmp_path / name).write_text("hello")
    script = write_script([repl("FINAL(len(context))")])
    trace = tmp_path / "t.jsonl"
    question = os.fsdecode(b"caf\xe9?")
    proc = ask_scripted(script, "--trace", str(trace), str(tmp_path / name), question)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"5\n"
    assert read_trace(trace)[0]["question"] == question


class SlowWorker(ScriptedProvider):
    """Sub-calls take half a second: slow enough for a cell to time out in the middle of them."""

    async def complete(self, request: ModelRequest) -> Completion:
        if request.purpose == "sub":
            await asyncio.sleep(0.5)
        return await super().complete(request)

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        return await self.complete(request)


@pytest.mark.slow
def test_sub_calls_outlasting_the_cell_limit_are_not_cancelled() -> None:
    """Issue 12: waiting on sub-calls is not a cell's own time, so a slow fan-out under a 1 s
    cell limit completes (it was cancelled whole, and every reply lost)."""
    provider = SlowWorker(
        [
            repl("r = llm_query_batched([f'p{i}' for i in range(20)])"),
            repl("FINAL(llm_query('after'))"),
        ],
        [SubRule(None, "ok")],
    )
    result = RLM(root_provider=provider, max_concurrency=2, cell_timeout=1).completion("c", "q")
    assert result.answer == "ok"
    finished = [e for e in result.events if isinstance(e, SubcallFinished)]
    assert len(finished) == 21 and not [e for e in finished if e.error]
    assert result.subcalls == len(finished)


@pytest.mark.slow
def test_nothing_outlives_a_killed_host_even_if_a_cell_stops_the_worker_from_exiting(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    """The worker exits when the host's pipe closes, but a cell can disable that; the launcher's
    parent-death signal still ends its namespace when the host dies (SIGKILL, a closed terminal)."""
    marker = "987.4242"
    cell = (
        "import os, subprocess, time\n"
        "os._exit = lambda code=0: None\n"
        f"subprocess.Popen(['sleep', '{marker}'])\n"
        "time.sleep(60)"
    )
    trace = tmp_path / "t.jsonl"
    proc = start_scripted(
        write_script([repl(cell)]), "--trace", str(trace), "q?",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert wait_until(lambda: bool(processes_with(marker)), timeout=30)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert wait_until(lambda: not processes_with(marker), timeout=10)

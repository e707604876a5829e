"""The command line end to end. What needs a real process (the exact bytes of stdout, a
terminal, a signal, `python -m`) runs `rlm` as a subprocess, the way users and CI scripts run
it, and is marked slow; the rest runs in process (conftest's invoke_scripted), its worker still
a real process. Flags, settings and exit codes alone: test_cli_flags.py."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    ask_scripted,
    invoke_scripted,
    read_trace,
    repl,
    run_rlm,
    start_scripted,
    wait_until,
)

HAYSTACK = b"x\nthe code is 42\ny\n"


def find_code_script(write_script: Callable[..., str]) -> str:
    return write_script(
        [
            repl("print(context[:200])", "Let me look first."),
            repl(
                "line = [l for l in context.splitlines() if 'code' in l][0]\n"
                "result = llm_query(line)\nFINAL_VAR('result')"
            ),
        ],
        [{"match": r"code is (\w+)", "reply": r"the code is \1"}, {"reply": "nothing here"}],
    )


@pytest.mark.slow
def test_piped_stdin_prints_exactly_the_answer(write_script: Callable[..., str]) -> None:
    script = find_code_script(write_script)
    proc = ask_scripted(script, "what is the code?", stdin=HAYSTACK)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"the code is 42\n"
    assert b"iteration 1/30" in proc.stderr  # progress goes to stderr, not stdout


@pytest.mark.slow
def test_json_is_one_object(write_script: Callable[..., str], tmp_path: Path) -> None:
    script = find_code_script(write_script)
    trace = tmp_path / "run.jsonl"
    proc = ask_scripted(
        script, "--json", "--trace", str(trace), "what is the code?", stdin=HAYSTACK
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["answer"] == "the code is 42"
    assert data["status"] == "ok"
    assert data["iterations"] == 2
    assert data["subcalls"] == 1
    assert data["trace"] == str(trace)
    assert set(data["usage"]) >= {"input_tokens", "output_tokens", "by_model"}
    by_model = data["usage"]["by_model"]
    assert by_model["scripted-root"]["calls"] == 2
    assert by_model["scripted-worker"]["calls"] == 1
    assert data["usage"]["input_tokens"] == sum(m["input_tokens"] for m in by_model.values())
    assert isinstance(data["elapsed_s"], float)


@pytest.mark.slow
def test_quiet_prints_nothing_on_stderr(write_script: Callable[..., str]) -> None:
    script = find_code_script(write_script)
    proc = ask_scripted(script, "-q", "q?", stdin=HAYSTACK)
    assert proc.returncode == 0
    assert proc.stderr == b""


def test_two_files_and_a_directory_make_a_dict(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.md").write_text("beta")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "z.txt").write_text("zed")
    (docs / "sub" / "y.txt").write_text("why")
    (docs / "m.txt").write_text("em")
    script = write_script([repl("import json\nFINAL(json.dumps(list(context.items())))")])
    proc = invoke_scripted(
        script, str(tmp_path / "a.txt"), str(tmp_path / "b.md"), str(docs), "what is here?"
    )
    assert proc.exit_code == 0, proc.stderr
    assert json.loads(proc.stdout) == [
        [str(tmp_path / "a.txt"), "alpha"],
        [str(tmp_path / "b.md"), "beta"],
        ["m.txt", "em"],
        ["sub/y.txt", "why"],
        ["z.txt", "zed"],
    ]


def test_one_file_is_a_str(write_script: Callable[..., str], tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\r\nbeta")
    script = write_script([repl("FINAL(type(context).__name__ + repr(context))")])
    proc = invoke_scripted(script, str(tmp_path / "a.txt"), "q?")
    assert proc.stdout_bytes == b"str'alpha\\r\\nbeta'\n"  # line endings are kept as they are


def test_dash_reads_stdin_beside_files(write_script: Callable[..., str], tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    script = write_script([repl("FINAL(sorted(context.items()))")])
    proc = invoke_scripted(script, "-", str(tmp_path / "a.txt"), "q?", stdin=b"piped")
    assert proc.exit_code == 0, proc.stderr
    assert (
        proc.stdout
        == str(sorted({"<stdin>": "piped", str(tmp_path / "a.txt"): "alpha"}.items())) + "\n"
    )


@pytest.mark.slow
def test_no_input_on_a_terminal_is_a_usage_error(write_script: Callable[..., str]) -> None:
    script = write_script([repl("FINAL(1)")])
    leader, follower = pty.openpty()
    try:
        proc = ask_scripted(script, "q?", stdin_fd=follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 2
    assert proc.stderr.startswith(b"rlm: error: no input")


def test_max_iterations_gives_best_effort_and_exit_6(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = write_script(
        [repl("x = 1"), repl("x += 1"), "I could not finish.\nFINAL(partial answer)"]
    )
    trace = tmp_path / "t.jsonl"
    proc = invoke_scripted(
        script, "--max-iterations", "2", "--trace", str(trace), "--json", "q?", stdin=b"text"
    )
    assert proc.exit_code == 6
    data = json.loads(proc.stdout)
    assert data["status"] == "max_iterations"
    assert data["answer"] == "partial answer"
    assert read_trace(trace)[-1]["status"] == "max_iterations"


def test_script_running_out_exits_5_and_trace_has_summary(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = write_script([repl("print(len(context))")])
    trace = tmp_path / "t.jsonl"
    proc = invoke_scripted(script, "--trace", str(trace), "q?", stdin=b"text")
    assert proc.exit_code == 5
    assert "root replies" in proc.stderr
    assert len(proc.stderr.splitlines()[-1:]) == 1
    records = read_trace(trace)
    assert records[0]["type"] == "trace_header"
    assert [r["type"] for r in records].count("cell_finished") == 1
    assert records[-1]["type"] == "run_finished" and records[-1]["status"] == "error"


@pytest.mark.slow
def test_cell_timeout_stops_the_cell_and_the_run_continues(
    write_script: Callable[..., str],
) -> None:
    script = write_script(
        [repl("kept = 7"), repl("while True: pass"), repl("FINAL(kept)")],
    )
    started = time.monotonic()
    # One second proves what two did: the interrupt, and the variable kept through it.
    proc = invoke_scripted(script, "--cell-timeout", "1", "q?", stdin=b"text")
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout_bytes == b"7\n"  # the variable survived the interrupt
    assert "timed out" in proc.stderr
    assert time.monotonic() - started < 10


def test_worker_crash_restarts_and_the_model_is_told(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = write_script(
        [
            repl("kept = 7"),
            repl("import os; os._exit(1)"),
            repl("FINAL(str(globals().get('kept')) + ' ' + context)"),
        ],
    )
    trace = tmp_path / "t.jsonl"
    proc = invoke_scripted(script, "--trace", str(trace), "q?", stdin=b"text")
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout_bytes == b"None text\n"  # variables lost, context reloaded
    cells = [r for r in read_trace(trace) if r["type"] == "cell_finished"]
    assert cells[1]["worker_restarted"] is True
    assert "variable you defined is lost" in cells[1]["output"]


def start_until_cells(script: str, trace: Path, cells: int) -> subprocess.Popen[bytes]:
    """Start `rlm ask` in the background; return once the trace shows `cells` cells started."""
    proc = start_scripted(
        script, "--trace", str(trace), "q?", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    wait_until(lambda: trace.exists() and trace.read_text().count('"cell_started"') >= cells)
    return proc


@pytest.mark.slow
def test_sigkill_keeps_every_completed_step(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = write_script([repl("print('step one')"), repl("import time\ntime.sleep(60)")])
    trace = tmp_path / "t.jsonl"
    proc = start_until_cells(script, trace, 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    records = read_trace(trace)
    types = [r["type"] for r in records]
    assert types[0] == "trace_header"
    assert types.count("cell_finished") == 1 and types.count("cell_started") == 2
    assert records[types.index("cell_finished")]["output"] == "step one\n"


@pytest.mark.slow
def test_ctrl_c_exits_130_with_an_interrupted_summary(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = write_script([repl("import time\ntime.sleep(60)")])
    trace = tmp_path / "t.jsonl"
    proc = start_until_cells(script, trace, 1)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=20)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.returncode == 130, err
    assert out == b""
    assert read_trace(trace)[-1]["status"] == "interrupted"


@pytest.mark.slow
def test_python_m_and_version() -> None:
    proc = run_rlm("--version")
    assert proc.returncode == 0 and proc.stdout.startswith(b"rlm ")
    assert os.path.basename(sys.executable)  # the module entry point is what run_rlm uses

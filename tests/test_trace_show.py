"""`rlm trace show` and `rlm trace export` on traces of runs that ended every way."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ask_scripted, repl, run_rlm, start_scripted, wait_until

BATCH = "r = llm_query_batched([f'item {i}' for i in range(12)])\nprint(len(r))"


def traced_run(write_script: Callable[..., str], tmp_path: Path, root: list[str]) -> Path:
    trace = tmp_path / "t.jsonl"
    script = write_script(root)
    ask_scripted(script, "-q", "--trace", str(trace), "q?", stdin=b"hello")
    return trace


@pytest.mark.slow
def test_show_a_completed_run(write_script: Callable[..., str], tmp_path: Path) -> None:
    trace = traced_run(
        write_script,
        tmp_path,
        [repl("print(len(context))", "Peek."), repl(BATCH), repl("FINAL('done')")],
    )
    proc = run_rlm("trace", "show", str(trace), env={"COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    for expected in (
        "question",
        "iteration 1",
        "iteration 2",
        "iteration 3",
        "Peek.",
        "12/12 done",
        "answer done",
        " ok ",
    ):
        assert expected in out, expected
    assert "without a summary" not in out


@pytest.mark.slow
def test_show_one_iteration_in_full(write_script: Callable[..., str], tmp_path: Path) -> None:
    long_code = "x = 1\n" * 40 + "print(x)"
    trace = traced_run(write_script, tmp_path, [repl(long_code), repl("FINAL(x)")])
    proc = run_rlm("trace", "show", str(trace), "--iteration", "1", env={"COLUMNS": "120"})
    out = proc.stdout.decode()
    assert out.count("x = 1") >= 40  # uncut
    assert "iteration 2 ·" not in out and "cell 2" not in out
    proc = run_rlm("trace", "show", str(trace), "--iteration", "7")
    assert proc.returncode == 2 and b"no iteration 7" in proc.stderr


@pytest.mark.slow
def test_show_a_failed_run(write_script: Callable[..., str], tmp_path: Path) -> None:
    trace = traced_run(write_script, tmp_path, [repl("print(1)")])  # the script runs out
    proc = run_rlm("trace", "show", str(trace), env={"COLUMNS": "120"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert "error" in out and "root replies" in out


@pytest.mark.slow
def test_show_a_run_killed_with_sigkill(write_script: Callable[..., str], tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    script = write_script([repl("print('first')"), repl("import time\ntime.sleep(60)")])
    proc = start_scripted(script, "-q", "--trace", str(trace), "q?")
    wait_until(lambda: trace.exists() and trace.read_text().count("cell_started") == 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    shown = run_rlm("trace", "show", str(trace), env={"COLUMNS": "120"})
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout.decode()
    assert "first" in out and "cell 2 running" in out
    assert "without a summary" in out


def test_show_a_missing_or_bad_file(tmp_path: Path) -> None:
    proc = run_rlm("trace", "show", str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and b"nope.jsonl" in proc.stderr and b"Traceback" not in proc.stderr


@pytest.mark.slow
def test_export_json_and_html(write_script: Callable[..., str], tmp_path: Path) -> None:
    trace = traced_run(write_script, tmp_path, [repl(BATCH), repl("FINAL('done')")])
    proc = run_rlm("trace", "export", str(trace), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document  # its shape is tested in test_trace_export.py
    out = tmp_path / "run.html"
    proc = run_rlm("trace", "export", str(trace), "-f", "html", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().lstrip().lower().startswith("<!doctype html>")

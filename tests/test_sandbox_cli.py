"""The sandbox as a user meets it: `rlm doctor`, the run header, and runs where layers are missing
(simulated with RLM_SANDBOX_SKIP, which makes the worker leave layers out)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ask_scripted, read_trace, repl, run_rlm

LAYERS = ["namespaces", "landlock", "privileges", "seccomp", "limits", "terminal"]


@pytest.mark.slow
def test_doctor_reports_every_layer_active_here() -> None:
    proc = run_rlm("doctor", "--json")
    assert proc.returncode == 0, proc.stdout
    report = json.loads(proc.stdout)
    assert list(report["layers"]) == LAYERS
    assert all(layer["active"] for layer in report["layers"].values()), report
    assert report["ok"] is True
    text = run_rlm("doctor").stdout.decode()
    assert text.count("active") >= len(LAYERS) and "UNAVAILABLE" not in text


@pytest.mark.slow
def test_doctor_names_a_missing_layer_and_exits_3() -> None:
    proc = run_rlm("doctor", env={"RLM_SANDBOX_SKIP": "landlock"})
    assert proc.returncode == 3
    assert b"landlock    UNAVAILABLE" in proc.stdout


@pytest.mark.slow
def test_a_run_without_every_layer_stops_with_exit_3_naming_them(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = write_script([repl("FINAL('answered')")])
    trace = tmp_path / "t.jsonl"
    skip = {"RLM_SANDBOX_SKIP": "namespaces,seccomp"}
    proc = ask_scripted(script, "--trace", str(trace), "q?", stdin=b"text", env=skip)
    assert proc.returncode == 3 and proc.stdout == b""
    error = proc.stderr.decode().strip().splitlines()[-1]
    assert error.startswith("rlm: error: the sandbox is weaker than required here: namespaces")
    assert "seccomp" in error and "rlm doctor" in error and "--allow-weaker-sandbox" in error
    assert read_trace(trace)[-1]["status"] == "error"


@pytest.mark.slow
def test_allow_weaker_runs_and_says_what_is_missing(write_script: Callable[..., str]) -> None:
    script = write_script([repl("FINAL('answered')")])
    proc = ask_scripted(
        script,
        "--allow-weaker-sandbox",
        "--view",
        "plain",
        "q?",
        stdin=b"text",
        env={"RLM_SANDBOX_SKIP": "seccomp"},
    )
    assert proc.returncode == 0 and proc.stdout == b"answered\n"
    assert b"sandbox WEAKER than it should be: no seccomp" in proc.stderr


@pytest.mark.slow
def test_the_header_and_trace_name_the_sandbox(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = write_script([repl("FINAL('answered')")])
    trace = tmp_path / "t.jsonl"
    proc = ask_scripted(script, "--view", "plain", "--trace", str(trace), "q?", stdin=b"text")
    assert proc.returncode == 0
    assert b"rlm: sandbox process: " + ", ".join(LAYERS).encode() in proc.stderr
    started = next(line for line in read_trace(trace) if line["type"] == "run_started")
    assert started["sandbox"]["mode"] == "process"
    assert all(layer["active"] for layer in started["sandbox"]["layers"].values())


@pytest.mark.slow
def test_sandbox_none_says_loudly_that_nothing_is_isolated(
    write_script: Callable[..., str],
) -> None:
    script = write_script([repl("FINAL('answered')")])
    proc = ask_scripted(script, "--sandbox", "none", "--view", "plain", "q?", stdin=b"text")
    assert proc.returncode == 0 and proc.stdout == b"answered\n"
    assert b"sandbox NONE: cells run with your user's full access; nothing is isolated" in (
        proc.stderr
    )


def test_an_unknown_sandbox_is_a_configuration_error(write_script: Callable[..., str]) -> None:
    script = write_script([repl("FINAL('answered')")])
    proc = ask_scripted(script, "--sandbox", "docker", "q?", stdin=b"text")
    assert proc.returncode == 3
    assert proc.stderr.strip().endswith(b"setting sandbox: must be process or none")

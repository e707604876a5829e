"""The library owns a run from inputs to result: `prepare`, traces of runs that never started,
the run_started summary, and RunResult as the one --json contract."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import read_trace, repl

from rlm_cli import RLM
from rlm_cli.api import prepare
from rlm_cli.config import load_settings
from rlm_cli.engine.result import RunResult
from rlm_cli.errors import ExitCode, UsageError
from rlm_cli.events import RunFinished, RunStarted


def scripted(write_script: Callable[..., str], *replies: str, **settings: object) -> RLM:
    return RLM(provider="scripted", script=write_script(list(replies)), **settings)


def assert_failed_before_start(trace: Path, question: str, needle: str) -> None:
    lines = read_trace(trace)
    assert [line["type"] for line in lines] == ["trace_header", "run_finished"]
    header, summary = lines
    assert header["question"] == question and header["settings"]["provider"] == "scripted"
    assert summary["status"] == "error" and needle in summary["error"]


def test_a_library_run_whose_input_is_missing_leaves_a_header_and_a_failed_summary(
    tmp_path: Path, write_script: Callable[..., str]
) -> None:
    trace = tmp_path / "t.jsonl"
    rlm = scripted(write_script, repl("FINAL('x')"), trace=str(trace))
    missing = tmp_path / "nope.log"
    with pytest.raises(UsageError, match=r"nope\.log"):
        rlm.completion(missing, "what failed?")
    assert_failed_before_start(trace, "what failed?", "nope.log")

    trace.unlink()  # the same through prepare, and through run (which returns the failure)
    with pytest.raises(UsageError):
        rlm.prepare([missing], "what failed?")
    assert_failed_before_start(trace, "what failed?", "nope.log")


def test_run_returns_a_failed_start_as_a_result(
    tmp_path: Path, write_script: Callable[..., str]
) -> None:
    trace = tmp_path / "t.jsonl"
    rlm = scripted(write_script, repl("FINAL('x')"), trace=str(trace))
    result = asyncio.run(rlm.run([tmp_path / "a", tmp_path / "b"], "q?"))
    assert result.status == "error" and result.exit_code == ExitCode.USAGE == 2
    assert result.to_json()["error"] == str(result.error) and result.to_json()["trace"] == str(
        trace
    )
    assert_failed_before_start(trace, "q?", str(tmp_path / "a"))


def test_a_value_that_cannot_be_written_is_traced_too(
    tmp_path: Path, write_script: Callable[..., str]
) -> None:
    trace = tmp_path / "t.jsonl"
    rlm = scripted(write_script, repl("FINAL('x')"), trace=str(trace))
    with pytest.raises(UsageError, match="cannot be written"):
        rlm.completion("lone \ud800 surrogate", "q?")
    assert_failed_before_start(trace, "q?", "cannot be written")


def test_paths_are_read_as_rlm_ask_reads_them(
    tmp_path: Path, write_script: Callable[..., str]
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.log").write_text("alpha\n")
    (folder / "b.log").write_text("beta\n")
    rlm = scripted(write_script, repl("FINAL(sorted(context))"))
    assert rlm.completion(folder, "which files?").answer == "['a.log', 'b.log']"
    assert folder.is_dir() and (folder / "a.log").read_text() == "alpha\n"  # nothing touched


def test_the_top_run_started_carries_its_summary_and_estimate_and_the_result_is_its_summary(
    tmp_path: Path, write_script: Callable[..., str]
) -> None:
    trace = tmp_path / "t.jsonl"
    rlm = scripted(write_script, repl("FINAL('done')"), trace=str(trace))
    result = rlm.completion("some text to read", "q?")
    started = [e for e in result.events if isinstance(e, RunStarted)]
    assert len(started) == 1 and started[0].summary is not None
    assert started[0].summary.startswith("inputs: 1 file")
    assert "no cost" in started[0].summary  # the scripted provider is free
    assert started[0].estimate == {"low_usd": 0.0, "high_usd": 0.0, "unknown_price": []}
    finished = [e for e in result.events if isinstance(e, RunFinished)]
    assert result.summary is finished[-1]
    # --json is the run_finished summary the trace ends with, plus the trace path.
    recorded = read_trace(trace)[-1]
    data = result.to_json()
    for key in ("answer", "status", "iterations", "subcalls", "usage", "elapsed_s", "failures"):
        assert data[key] == recorded[key], key
    assert data["trace"] == str(trace)


def test_prepare_needs_no_key_and_estimates_from_the_settings(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("x" * 40_000)
    settings = load_settings({"provider": "openai", "model": "gpt-4o", "sub_model": "gpt-4o-mini"})
    run = prepare("q?", [str(tmp_path / "in.txt")], None, settings)  # no OPENAI_API_KEY set
    try:
        assert run.inputs.total_bytes == 40_000
        assert run.estimate.low is not None and run.estimate.high is not None
        assert 0 < run.estimate.low < run.estimate.high
        assert run.summary.startswith("inputs: 1 file") and "est. cost" in run.summary
    finally:
        run.cleanup()


def test_strict_turns_failed_sub_calls_into_exit_7() -> None:
    summary = RunFinished(
        "r", status="ok", answer="a", iterations=1, subcalls=4, usage={}, elapsed_s=0.1,
        subcalls_failed=1, failures={"provider": 1},
    )  # fmt: skip
    assert RunResult(summary).exit_code == ExitCode.OK
    assert RunResult(summary, strict=True).exit_code == ExitCode.SUBCALLS_FAILED == 7
    stopped = RunFinished(
        "r", status="max_cost", answer=None, iterations=1, subcalls=4, usage={}, elapsed_s=0.1
    )
    assert RunResult(stopped, strict=True).exit_code == ExitCode.LIMIT == 6

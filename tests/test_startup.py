"""Start-up and exit: commands that call no model load neither the SDKs, the HTTP client nor the
engine; and a process that leaves without the interpreter's final collection (cli.main) still
delivers everything: the answer, the --json object, the whole trace, the exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest
from conftest import ask_scripted, read_trace, repl, run_rlm, start_scripted

# What a command that sends no request must not import: each costs start-up time.
HEAVY = (
    "openai",
    "anthropic",
    "httpx",
    "aiohttp",
    "tiktoken",
    "pathspec",
    "asyncio",
    "rlm_cli.api",
    "rlm_cli.engine",
    "rlm_cli.sandbox",
    "rlm_cli.providers.wire",
    "rlm_cli.inputs.resolve",
    "rich.markdown",
)


def imports_after(*args: str) -> tuple[list[str], str]:
    """The HEAVY modules a fresh interpreter holds after `rlm ARGS` (run through the Typer
    app, which does not leave the process early as `main` does), and what it printed."""
    code = (
        "import sys\n"
        "from rlm_cli.cli import app\n"
        f"try:\n    app({list(args)!r})\nexcept SystemExit:\n    pass\n"
        f"heavy = {HEAVY!r}\n"
        "print('IMPORTED', [m for m in heavy if m in sys.modules], file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    line = next(line for line in proc.stderr.splitlines() if line.startswith("IMPORTED"))
    return eval(line.removeprefix("IMPORTED ")), proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["ask", "--help"],
        ["--version"],
        ["models"],
        ["providers"],
        ["trace", "--help"],
        ["cache", "--help"],
        ["inspect", "--help"],
    ],
    ids=" ".join,
)
def test_commands_that_call_no_model_load_neither_sdk_nor_engine(args: list[str]) -> None:
    imported, stdout = imports_after(*args)
    assert imported == []
    assert stdout  # the command did its job


@pytest.mark.slow
def test_ask_help_teaches() -> None:
    _, stdout = imports_after("ask", "--help")
    assert "Exit codes" in stdout and "--max-iterations" in stdout
    assert "Known: openai, anthropic" in stdout  # the presets, read from the catalog


@pytest.mark.slow
def test_a_quick_exit_still_delivers_the_answer_the_json_and_the_trace(
    write_script: Callable[..., str], tmp_path: str
) -> None:
    script = write_script([repl("print(len(context))"), repl("FINAL('done')")])
    trace = f"{tmp_path}/t.jsonl"
    proc = ask_scripted(script, "--trace", trace, "--json", "q?", stdin=b"x" * 100_000)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["answer"] == "done"
    records = read_trace(trace)
    assert records[-1]["type"] == "run_finished" and records[-1]["status"] == "ok"
    # A failed run's code is the command's, through the quick exit.
    proc = ask_scripted(script, "--max-iterations", "1", "q?", stdin=b"text")
    assert proc.returncode not in (0, 1), proc.stderr
    proc = ask_scripted(script, "/no/such/file", "q?")
    assert proc.returncode == 2 and proc.stderr.count(b"\n") == 1, proc.stderr


@pytest.mark.slow
def test_a_reader_that_goes_away_does_not_change_the_status(
    write_script: Callable[..., str],
) -> None:
    script = write_script([repl("FINAL('x' * 1_000_000)")])
    proc = start_scripted(script, "q?", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `rlm ask ... | head -c0`
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in proc.stderr.read()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shell", "env", "expected"),
    [
        ("bash", {"COMP_WORDS": "rlm ask --max-it", "COMP_CWORD": "2"}, "--max-iterations"),
        ("zsh", {"_TYPER_COMPLETE_ARGS": "rlm tr"}, '"trace"'),
        ("fish", {"_TYPER_COMPLETE_ARGS": "rlm ca", "_TYPER_COMPLETE_FISH_ACTION": "get-args"},
         "cache\t"),
    ],
)  # fmt: skip
def test_shell_completion_answers_for_rlm_however_it_is_started(
    shell: str, env: dict[str, str], expected: str
) -> None:
    # `python -m rlm_cli` here: the program still calls itself rlm, so the variable is ours.
    proc = run_rlm(env={"_RLM_COMPLETE": f"complete_{shell}", **env})
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout.decode()

"""Honest outcomes at the command line: arguments make sense before credentials are looked up,
a forgotten question is named, limits are said out loud before anything is spent, failed
sub-calls are never a silent success, and the wheel ships every file the package needs."""

from __future__ import annotations

import glob
import json
import os
import pty
import select
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import RLM_COMMAND, ROOT, invoke_rlm, invoke_scripted, read_trace, repl

from rlm_cli.bench.fake_llm import FakeLLM
from rlm_cli.engine.result import RunResult
from rlm_cli.errors import EXIT_CODES
from rlm_cli.events import RunFinished

if TYPE_CHECKING:
    from typer.testing import Result

# No provider key is set in any test (conftest unsets them): "without a key" is the default.
# `rlm` runs in process (conftest's invoke_rlm), but on a terminal, which needs a real one.


def lines(proc: Result) -> list[str]:
    return proc.stderr.strip().splitlines()


# ----- case 7a: argument sense before credentials -----


@pytest.mark.parametrize("provider", ["openai", "anthropic", "openrouter"])
def test_a_missing_file_without_a_key_is_reported_as_the_missing_file(
    provider: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.log"
    trace = tmp_path / "t.jsonl"
    proc = invoke_rlm(
        "ask", "--provider", provider, "--model", "m", str(missing), "q?", "--trace", str(trace)
    )
    assert proc.exit_code == 2, proc.stderr
    assert lines(proc) == [f"rlm: error: {missing}: no such file or directory; check the path"]
    # The run still leaves a trace that says why it never started.
    records = read_trace(trace)
    assert records[0]["type"] == "trace_header"
    assert records[-1]["status"] == "error" and str(missing) in records[-1]["error"]


def test_a_forgotten_question_without_a_key_is_reported_as_the_forgotten_question(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    trace = tmp_path / "t.jsonl"
    proc = invoke_rlm("ask", "--trace", str(trace), str(log))
    assert proc.exit_code == 2, proc.stderr
    assert "did you forget the question?" in proc.stderr
    assert "API key" not in proc.stderr
    assert "did you forget the question?" in read_trace(trace)[-1]["error"]


def test_an_empty_directory_without_a_key_is_reported_as_the_empty_directory(
    tmp_path: Path,
) -> None:
    (tmp_path / "empty").mkdir()
    proc = invoke_rlm("ask", str(tmp_path / "empty"), "q?")
    assert proc.exit_code == 2, proc.stderr
    assert "API key" not in proc.stderr


def test_good_arguments_without_a_key_still_exit_4_and_leave_a_trace(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    trace = tmp_path / "t.jsonl"
    proc = invoke_rlm("ask", str(log), "q?", "--trace", str(trace))
    assert proc.exit_code == 4, proc.stderr
    assert len(lines(proc)) == 1 and "OPENAI_API_KEY" in proc.stderr
    records = read_trace(trace)
    assert records[0]["type"] == "trace_header" and records[0]["inputs"] is not None
    assert "OPENAI_API_KEY" in records[-1]["error"]


# ----- case 8: the last argument is the question -----


def test_a_directory_as_the_last_argument_is_a_forgotten_question(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "a.txt").write_text("a\n")
    script = write_script([repl("FINAL('answered')")])
    proc = invoke_rlm("ask", "--provider", "scripted", "--script", script, str(log), str(folder))
    assert proc.exit_code == 2, proc.stderr
    assert proc.stdout_bytes == b""
    assert lines(proc) == [
        f"rlm: error: the last argument must be the question; `{folder}` is a directory — "
        'did you forget the question? (rlm ask INPUTS... "QUESTION")'
    ]


@pytest.mark.parametrize("stdin", [b"", b"piped text"])
def test_a_file_as_the_only_argument_is_a_forgotten_question(
    stdin: bytes, write_script: Callable[..., str], tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    script = write_script([repl("FINAL('answered')")])
    proc = invoke_rlm("ask", "--provider", "scripted", "--script", script, str(log), stdin=stdin)
    assert proc.exit_code == 2, proc.stderr
    assert f"`{log}` is a file — did you forget the question?" in proc.stderr
    assert "standard input is empty" not in proc.stderr


def test_dry_run_checks_the_question_too(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    proc = invoke_rlm("ask", "--dry-run", str(log), str(tmp_path))
    assert proc.exit_code == 2
    assert "is a directory — did you forget the question?" in proc.stderr


def test_a_question_that_names_no_path_still_runs(
    write_script: Callable[..., str], tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    script = write_script([repl("FINAL('answered')")])
    proc = invoke_scripted(script, str(log), "dir", "-q")  # no `dir` in the working directory
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout_bytes == b"answered\n"


# ----- case 4: --max-cost over a model without a price -----

UNENFORCEABLE = (
    "rlm: warning: --max-cost cannot be enforced for model {}: its price is unknown; give "
    "prices with --prices FILE, or bound the run with --max-tokens"
)


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openrouter", "meta-llama/llama-3.3-70b"), ("together", "Qwen/Qwen3-235B"), ("groq", "x")],
)
def test_max_cost_over_an_unpriced_model_warns_before_spending(
    provider: str, model: str, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    args = ("ask", "--provider", provider, "--model", model, str(log), "q?", "--max-cost", "1")
    proc = invoke_rlm(*args, "--dry-run")
    assert proc.exit_code == 0, proc.stderr
    assert UNENFORCEABLE.format(model) in lines(proc)


def test_max_cost_warning_in_a_real_run_comes_before_the_first_model_call(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("the code is 42\n")
    with FakeLLM([repl("FINAL('42')")]) as fake:
        proc = invoke_rlm(
            "ask", "--base-url", fake.url + "/v1", "--model", "my-model", str(log), "q?",
            "--max-cost", "1", "--view", "plain",
            env={"OPENAI_API_KEY": "test-key"},
        )  # fmt: skip
    assert proc.exit_code == 0, proc.stderr
    stderr = lines(proc)
    warning = UNENFORCEABLE.format("my-model")
    assert stderr.count(warning) == 1
    first_call = next(i for i, line in enumerate(stderr) if "root replied" in line)
    assert stderr.index(warning) < first_call


def test_max_cost_names_both_models_when_neither_has_a_price(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    proc = invoke_rlm(
        "ask", "--model", "r1", "--sub-model", "w1", str(log), "q?", "--max-cost", "1", "--dry-run"
    )
    assert (
        "rlm: warning: --max-cost cannot be enforced for models r1 and w1: their prices are "
        "unknown; give prices with --prices FILE, or bound the run with --max-tokens"
    ) in lines(proc)


@pytest.mark.parametrize(
    "extra",
    [
        ("--provider", "ollama", "--model", "qwen3-coder"),  # local: free, a known cost of 0
        ("--provider", "llamacpp", "--model", "anything"),
        ("--model", "gpt-5"),  # priced in the catalog
        ("--provider", "openrouter", "--model", "openai/gpt-5"),  # priced, under a vendor prefix
        ("--model", "mine", "--prices", "PRICES"),  # priced by the user
    ],
)
def test_max_cost_over_priced_or_free_models_does_not_warn(
    extra: tuple[str, ...], tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  mine: {input: 1.0, output: 2.0}\n")
    extra = tuple(str(prices) if arg == "PRICES" else arg for arg in extra)
    proc = invoke_rlm("ask", *extra, str(log), "q?", "--max-cost", "1", "--dry-run")
    assert proc.exit_code == 0, proc.stderr
    assert "cannot be enforced" not in proc.stderr


def test_max_cost_from_a_config_file_is_named_as_the_setting(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("hello\n")
    config = tmp_path / "rlm.yaml"
    config.write_text("max_cost: 2\n")
    proc = invoke_rlm("ask", "--config", str(config), "--model", "m", str(log), "q?", "--dry-run")
    assert f"rlm: warning: max_cost (config file {config}) cannot be enforced for model m" in (
        proc.stderr
    )


# ----- limits said out loud: confirmation above confirm_above_usd -----


def costly(tmp_path: Path) -> tuple[Path, Path]:
    """An input and a config under which gpt-5's high estimate (about $1) passes the threshold."""
    log = tmp_path / "server.log"
    log.write_text("the code is 42\n")
    config = tmp_path / "rlm.yaml"
    config.write_text("confirm_above_usd: 0.05\n")
    return log, config


def run_on_a_terminal(
    args: list[str], answer: bytes | None, env: dict[str, str]
) -> tuple[int, bytes, str]:
    """`rlm` with stdin and stderr on a pseudo-terminal; `answer` is typed at the prompt."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*RLM_COMMAND, *args],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm", **env},
    )
    os.close(follower)
    screen = b""
    answered = answer is None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen += chunk
            if not answered and b"Continue? [y/N]" in screen:
                assert answer is not None
                os.write(leader, answer)
                answered = True
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.stdout is not None
    code = proc.wait(timeout=30)
    with proc.stdout:
        return code, proc.stdout.read(), screen.decode("utf-8", "replace")


@pytest.mark.slow
def test_a_costly_run_on_a_terminal_asks_and_no_exits_8_spending_nothing(tmp_path: Path) -> None:
    log, config = costly(tmp_path)
    trace = tmp_path / "t.jsonl"
    with FakeLLM([repl("FINAL('42')")]) as fake:
        code, stdout, screen = run_on_a_terminal(
            ["ask", "--config", str(config), "--base-url", fake.url + "/v1", str(log), "q?",
             "--trace", str(trace)],
            b"n\n",
            {"OPENAI_API_KEY": "test-key"},
        )  # fmt: skip
        assert fake.requests == []  # nothing was sent
    assert code == 8 == next(c for c, what in EXIT_CODES.items() if "not confirmed" in what)
    assert stdout == b""
    assert "rlm: this run may cost up to $" in screen and "Continue? [y/N]" in screen
    assert "nothing was spent" in screen
    records = read_trace(trace)
    assert records[-1]["status"] == "not_confirmed"


@pytest.mark.slow
def test_a_costly_run_on_a_terminal_goes_on_when_the_answer_is_yes(tmp_path: Path) -> None:
    log, config = costly(tmp_path)
    with FakeLLM([repl("FINAL('42')")]) as fake:
        code, stdout, screen = run_on_a_terminal(
            ["ask", "--config", str(config), "--base-url", fake.url + "/v1", str(log), "q?"],
            b"y\n",
            {"OPENAI_API_KEY": "test-key"},
        )
    assert code == 0, screen
    assert stdout == b"42\n"
    assert "Continue? [y/N]" in screen


@pytest.mark.slow
def test_yes_skips_the_question(tmp_path: Path) -> None:
    log, config = costly(tmp_path)
    with FakeLLM([repl("FINAL('42')")]) as fake:
        code, stdout, screen = run_on_a_terminal(
            ["ask", "--config", str(config), "--base-url", fake.url + "/v1", str(log), "q?",
             "--yes"],
            None,
            {"OPENAI_API_KEY": "test-key"},
        )  # fmt: skip
    assert code == 0, screen
    assert stdout == b"42\n"
    assert "Continue?" not in screen


@pytest.mark.parametrize("quiet", [False, True])
def test_a_costly_run_off_a_terminal_never_waits_and_says_the_estimate(
    quiet: bool, tmp_path: Path
) -> None:
    log, config = costly(tmp_path)
    with FakeLLM([repl("FINAL('42')")]) as fake:
        proc = invoke_rlm(
            "ask", "--config", str(config), "--base-url", fake.url + "/v1", str(log), "q?",
            *(["--quiet"] if quiet else ["--view", "plain"]),
            env={"OPENAI_API_KEY": "test-key"},
        )  # fmt: skip
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout_bytes == b"42\n"
    stderr = proc.stderr
    assert "Continue?" not in stderr
    if quiet:  # the summary line was not shown, so the estimate gets a line of its own
        assert "rlm: note: this run may cost up to $" in stderr
    else:
        assert "est. cost $" in stderr


def test_help_teaches_the_new_flags() -> None:
    result = invoke_rlm("ask", "--help", env={"COLUMNS": "200"})
    text = " ".join(result.output.split())
    for expected in ("--strict", "Exit 7", "--yes", "confirm_above_usd", "(default $5)"):
        assert expected in text, expected


# ----- failed sub-calls -----


def result(status: Any = "ok", subcalls: int = 20, failed: int = 0, **failures: int) -> RunResult:
    summary = RunFinished(
        "r",
        status=status,
        answer="a",
        iterations=1,
        subcalls=subcalls,
        usage={},
        elapsed_s=0.0,
        subcalls_failed=failed,
        failures=failures,
    )
    return RunResult(summary)


def note(run: RunResult, strict: bool, first: str | None = None) -> tuple[str, str] | None:
    run.strict = strict
    return run.subcall_note(first)


def test_failed_subcalls_are_said_and_strict_or_all_failed_is_exit_7() -> None:
    assert note(result(), strict=True) is None
    assert note(result(failed=3, provider=3), strict=False) == (
        "warning",
        "answered, but 3 of 20 sub-calls failed (provider 3); --strict makes this exit 7",
    )
    assert note(result(failed=3, provider=2, timeout=1), strict=True) == (
        "error",
        "answered, but 3 of 20 sub-calls failed (provider 2, timeout 1) (--strict)",
    )
    # Every sub-call failed: never a silent exit 0 (a warning), and exit 7 with --strict.
    assert note(result(subcalls=4, failed=4, provider=4), strict=False) == (
        "warning",
        "answered, but all 4 sub-calls failed (provider 4); the answer rests on none of them; "
        "--strict makes this exit 7",
    )
    assert note(result(subcalls=4, failed=4, provider=4), strict=True) == (
        "error",
        "answered, but all 4 sub-calls failed (provider 4); the answer rests on none of them "
        "(--strict)",
    )
    assert note(result(subcalls=1, failed=1, provider=1), False, "w: HTTP 404") == (
        "warning",
        "answered, but its only sub-call failed (provider 1); the answer rests on none of them; "
        "the first: w: HTTP 404; --strict makes this exit 7",
    )
    # A run stopped by a limit keeps its exit 6; the failures are still said.
    assert note(result("max_cost", failed=2, budget=2), strict=True) == (
        "warning",
        "2 of 20 sub-calls failed (budget 2)",
    )
    assert EXIT_CODES[7].startswith("answered, but sub-calls failed")


def test_json_always_has_subcalls_failed_and_failures(write_script: Callable[..., str]) -> None:
    script = write_script([repl("FINAL('done')")])
    proc = invoke_scripted(script, "q?", "--json", "-q", stdin=b"text")
    assert proc.exit_code == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["subcalls_failed"], data["failures"]) == (0, {})
    assert data["redacted"] == 0


def failing_script(write_script: Callable[..., str], prompts: list[str]) -> str:
    """Sub-calls whose prompt says `miss` match no rule: the scripted provider fails them."""
    return write_script(
        [repl(f"r = llm_query_batched({prompts!r})\nprint(r)"), repl("FINAL('done')")],
        [{"match": "hit", "reply": "found"}],
    )


def test_some_failed_subcalls_warn_and_exit_0(write_script: Callable[..., str]) -> None:
    script = failing_script(write_script, ["a hit", "a miss", "b miss", "c hit"])
    proc = invoke_scripted(script, "q?", "--json", "-q", stdin=b"text")
    assert proc.exit_code == 0, proc.stderr
    assert json.loads(proc.stdout)["subcalls_failed"] == 2
    assert "rlm: warning: answered, but 2 of 4 sub-calls failed (" in proc.stderr
    assert "--strict makes this exit 7" in proc.stderr


@pytest.mark.parametrize("how", ["flag", "config"])
def test_strict_makes_any_failed_subcall_exit_7(
    how: str, write_script: Callable[..., str], tmp_path: Path
) -> None:
    script = failing_script(write_script, ["a hit", "a miss"])
    config = tmp_path / "rlm.yaml"
    config.write_text("strict: true\n")
    strict = ["--strict"] if how == "flag" else ["--config", str(config)]
    proc = invoke_scripted(script, "q?", "-q", *strict, stdin=b"text")
    assert proc.exit_code == 7, proc.stderr
    assert proc.stdout_bytes == b"done\n"  # the answer is still printed
    assert "rlm: error: answered, but 1 of 2 sub-calls failed (" in proc.stderr


def test_every_subcall_failed_is_never_a_silent_exit_0(write_script: Callable[..., str]) -> None:
    script = failing_script(write_script, ["a miss", "b miss", "c miss"])
    proc = invoke_scripted(script, "q?", "-q", stdin=b"text")
    assert proc.exit_code == 0, proc.stderr
    assert "rlm: warning: answered, but all 3 sub-calls failed (" in proc.stderr
    # ... and names the first failure, which says what went wrong and where.
    assert "the answer rests on none of them; the first: " in proc.stderr
    assert "no 'sub' rule matches the prompt 'a miss'; --strict makes this exit 7" in proc.stderr
    strict = invoke_scripted(script, "q?", "-q", "--strict", stdin=b"text")
    assert strict.exit_code == 7, strict.stderr


# ----- case 17: a limit with no answer says so -----


def test_a_limit_without_an_answer_says_no_answer(write_script: Callable[..., str]) -> None:
    script = write_script([repl("x = 1"), repl("y = 2"), repl("z = 3")])
    proc = invoke_scripted(script, "q?", "--max-iterations", "1", "-q", stdin=b"text")
    assert proc.exit_code == 6
    assert proc.stdout_bytes == b""
    assert lines(proc) == ["rlm: stopped: max iterations reached; no answer"]


def test_a_limit_with_an_answer_says_best_effort(write_script: Callable[..., str]) -> None:
    script = write_script([repl("x = 1"), repl("FINAL('partial')")])
    proc = invoke_scripted(script, "q?", "--max-iterations", "1", "-q", stdin=b"text")
    assert proc.exit_code == 6
    assert proc.stdout_bytes == b"partial\n"
    assert lines(proc) == ["rlm: stopped: max iterations reached; the answer is a best effort"]


# ----- case 11: the wheel ships every data file -----


def test_every_data_file_of_the_package_is_in_package_data() -> None:
    """A file under rlm_cli/ that is not Python ships in the wheel only if package-data names
    it; a missing one broke every `rlm ask` from a non-editable install."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_data: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    shipped: set[Path] = set()
    for package, patterns in package_data.items():
        bases = (
            [p.parent for p in (ROOT / "rlm_cli").rglob("__init__.py")]
            if package in ("*", "")
            else [ROOT / Path(*package.split("."))]
        )
        for base in bases:
            for pattern in patterns:
                shipped |= {Path(p) for p in glob.glob(str(base / pattern), recursive=True)}
    data_files = {
        path
        for path in (ROOT / "rlm_cli").rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    assert data_files, "the package has data files (the model catalog at least)"
    missing = sorted(str(p.relative_to(ROOT)) for p in data_files - shipped)
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"

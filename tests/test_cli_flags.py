"""Flags -> settings -> exit codes, in process with Typer's CliRunner (conftest's `invoke_rlm`):
what a user gets for a bad flag, a bad setting, a bad input or a missing key, without a Python
start per case. End-to-end behaviour (terminals, signals, stdout bytes) stays in test_cli.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import command_paths, invoke_rlm, read_trace, repl

from rlm_cli.errors import EXIT_CODES


@pytest.fixture
def log(tmp_path: Path) -> str:
    path = tmp_path / "server.log"
    path.write_text("the code is 42\n")
    return str(path)


def one_error_line(stderr: str) -> str:
    """rlm's own errors are one line on stderr, with no traceback."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("rlm: error: ")
    return lines[0]


# ----- --help -----


@pytest.mark.parametrize("path", list(command_paths()), ids=lambda p: " ".join(p) or "rlm")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = invoke_rlm(*path, "--help", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Usage: {' '.join(('rlm', *path))} " in " ".join(result.stdout.split())
    assert result.stderr == ""


def test_the_commands_users_are_told_of_exist() -> None:
    names = {" ".join(path) for path in command_paths()}
    assert names >= {"ask", "inspect", "models", "providers", "doctor", "trace show",
                     "trace export", "cache stats", "cache clear"}  # fmt: skip


def test_ask_help_lists_every_exit_code() -> None:
    text = " ".join(invoke_rlm("ask", "--help", env={"COLUMNS": "300"}).stdout.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {' '.join(meaning.split())}" in text, code


# ----- exit 2: usage -----


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("ask", "--max-iterations", "lots", "q?"), "--max-iterations"),  # not a number
        (("ask", "--cell-timeout", "soon", "q?"), "--cell-timeout"),
        (("ask", "--max-cost", "$1", "q?"), "--max-cost"),
        (("ask", "--view", "fancy", "q?"), "--view"),  # not one of the choices
        (("ask", "--max-iteration", "3", "q?"), "No such option"),  # misspelt
        (("ask", "--json=yes", "q?"), "--json"),  # a switch takes no value
        (("ask",), "Usage: rlm ask"),  # no arguments: the help, as a usage error
        (("asks", "q?"), "No such command"),
        (("trace", "show"), "Missing argument"),
        (("trace", "export", "t.jsonl", "-f", "pdf"), "--format"),
    ],
)
def test_a_flag_click_refuses_exits_2(args: tuple[str, ...], said: str) -> None:
    result = invoke_rlm(*args, stdin=b"text", env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert result.stdout_bytes == b"" or "Usage:" in result.stdout  # never an answer


@pytest.mark.parametrize(
    ("args", "stdin", "said"),
    [
        (("--max-file-size", "lots", "LOG", "q?"), b"", "--max-file-size 'lots': give a size"),
        (("--max-file-size", "0", "LOG", "q?"), b"", "must be at least 1 byte"),
        (("MISSING", "q?"), b"", "MISSING: no such file or directory; check the path"),
        (("q?",), b"", "standard input is empty"),
        (("LOG", "  "), b"", "the question is empty"),
        (("LOG",), b"", "is a file — did you forget the question?"),
        (("LOG", "DIR"), b"", "is a directory — did you forget the question?"),
        (("DIR", "q?"), b"", "DIR"),  # an empty directory
        (("-", "q?"), b"", "standard input is empty"),
    ],
)
def test_a_bad_input_or_question_exits_2_with_one_line(
    args: tuple[str, ...], stdin: bytes, said: str, log: str, tmp_path: Path
) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    names = {"LOG": log, "DIR": str(folder), "MISSING": str(tmp_path / "missing.txt")}
    real = [names.get(arg, arg) for arg in args]
    for mode in ([], ["--dry-run"]):  # checked before the dry run stops, too
        result = invoke_rlm("ask", *mode, *real, stdin=stdin)
        assert result.exit_code == 2, result.output
        line = one_error_line(result.stderr)
        for name, value in names.items():
            said = said.replace(name, value)
        assert said in line
        assert result.stdout_bytes == b""


def test_a_missing_input_leaves_a_trace_that_says_why(tmp_path: Path) -> None:
    missing, trace = tmp_path / "nope.txt", tmp_path / "t.jsonl"
    result = invoke_rlm("ask", "--trace", str(trace), str(missing), "q?")
    assert result.exit_code == 2
    assert str(missing) in one_error_line(result.stderr)
    records = read_trace(trace)
    assert records[0]["type"] == "trace_header"
    assert records[-1]["type"] == "run_finished" and records[-1]["status"] == "error"
    assert str(missing) in records[-1]["error"]


@pytest.mark.parametrize(
    "args",
    [
        ("inspect", "MISSING"),
        ("inspect", "MISSING", "--json"),
        ("trace", "show", "MISSING"),
        ("trace", "export", "MISSING"),
        ("trace", "export", "MISSING", "-f", "html"),
    ],
)
def test_other_commands_exit_2_on_a_missing_path(args: tuple[str, ...], tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    result = invoke_rlm(*(missing if arg == "MISSING" else arg for arg in args))
    assert result.exit_code == 2, result.output
    assert missing in one_error_line(result.stderr)


def test_trace_show_of_an_iteration_the_trace_lacks_exits_2(log: str, tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    assert invoke_rlm("ask", "--trace", str(trace), log, "q?").exit_code == 4  # no key: no turn
    result = invoke_rlm("trace", "show", str(trace), "--iteration", "99")
    assert result.exit_code == 2
    assert one_error_line(result.stderr).endswith("no iteration 99; the trace has none")


# ----- exit 3: settings and config files -----


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (("--provider", "nope"), "unknown provider 'nope'"),
        (("--sub-provider", "nope"), "'nope'"),
        (("--max-iterations", "0"), "max_iterations: must be between 1 and 1000"),
        (("--max-iterations", "-3"), "max_iterations"),
        (("--max-depth", "9"), "max_depth: must be between 1 and 5"),
        (("--temperature", "7"), "temperature: must be between 0 and 2"),
        (("--output-limit", "5"), "output_limit"),
        (("--max-memory-share", "2"), "max_memory_share"),
        (("--sandbox", "docker"), "sandbox: must be process or none"),
        (("--reasoning-effort", "max"), "reasoning_effort: must be low, medium or high"),
        (("--prices", "MISSING"), "cannot read the prices file"),
        (("--config", "MISSING"), "MISSING"),
    ],
)
def test_a_bad_setting_exits_3_naming_it(
    flags: tuple[str, ...], said: str, log: str, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.yaml")
    flags = tuple(missing if flag == "MISSING" else flag for flag in flags)
    for mode in ([], ["--dry-run"]):  # a bad setting is found before the dry run stops
        result = invoke_rlm("ask", *mode, *flags, log, "q?")
        assert result.exit_code == 3, result.output
        assert said.replace("MISSING", missing) in one_error_line(result.stderr)


def test_a_scripted_run_without_its_script_exits_3(log: str) -> None:
    result = invoke_rlm("ask", "--provider", "scripted", log, "q?")
    assert result.exit_code == 3, result.output
    assert "--script" in one_error_line(result.stderr)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("max_iteratoins: 3\n", "max_iteratoins"),  # unknown keys are errors
        ("max_iterations: lots\n", "max_iterations"),
        ("- a list\n", "CONFIG"),
        ("provider: [\n", "CONFIG"),  # not YAML
    ],
)
def test_a_bad_config_file_exits_3_naming_the_file(
    text: str, said: str, log: str, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text)
    result = invoke_rlm("ask", "--config", str(config), log, "q?")
    assert result.exit_code == 3, result.output
    line = one_error_line(result.stderr)
    assert str(config) in line and said.replace("CONFIG", str(config)) in line


def test_rlm_config_names_the_config_file(log: str, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("max_iteratoins: 3\n")
    result = invoke_rlm("ask", log, "q?", env={"RLM_CONFIG": str(config)})
    assert result.exit_code == 3
    assert str(config) in one_error_line(result.stderr)


# ----- exit 4: credentials, looked up last -----


def test_no_test_sees_a_provider_key() -> None:
    """conftest unsets them: a test that forgot a fake key must fail, not reach a vendor."""
    assert not [name for name in os.environ if name.endswith("_API_KEY")]


@pytest.mark.parametrize(
    ("flags", "variable"),
    [
        ((), "OPENAI_API_KEY"),
        (("--provider", "anthropic"), "ANTHROPIC_API_KEY"),
        (("--provider", "openrouter", "--model", "m"), "OPENROUTER_API_KEY"),
        (("--api-key-env", "MY_KEY"), "MY_KEY"),
        (
            ("--provider", "ollama", "--model", "m", "--sub-provider", "groq", "--sub-model", "w"),
            "GROQ_API_KEY",
        ),
    ],
)
def test_good_arguments_without_a_key_exit_4_naming_the_variable(
    flags: tuple[str, ...], variable: str, log: str
) -> None:
    result = invoke_rlm("ask", *flags, log, "q?")
    assert result.exit_code == 4, result.output
    assert variable in one_error_line(result.stderr)
    assert result.stdout_bytes == b""


def test_without_a_key_json_is_still_one_object(log: str) -> None:
    result = invoke_rlm("ask", "--json", log, "q?")
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    assert data["status"] == "error" and "OPENAI_API_KEY" in data["error"]
    assert data["answer"] is None


# ----- flags -> settings -----

# Every value flag of `rlm ask`, a value off its default, and the setting it must land in.
FLAG_SETTINGS: list[tuple[str, str, str, Any]] = [
    ("--model", "m", "model", "m"),
    ("--sub-provider", "anthropic", "sub_provider", "anthropic"),
    ("--sub-model", "w", "sub_model", "w"),
    ("--base-url", "http://127.0.0.1:9/v1", "base_url", "http://127.0.0.1:9/v1"),
    ("--sub-base-url", "http://127.0.0.1:8", "sub_base_url", "http://127.0.0.1:8"),
    ("--api-key-env", "MY_KEY", "api_key_env", "MY_KEY"),
    ("--sub-api-key-env", "MY_SUB_KEY", "sub_api_key_env", "MY_SUB_KEY"),
    ("--temperature", "0.5", "temperature", 0.5),
    ("--max-output-tokens", "77", "max_output_tokens", 77),
    ("--reasoning-effort", "low", "reasoning_effort", "low"),
    ("--max-retries", "2", "max_retries", 2),
    ("--request-timeout", "30", "request_timeout", 30.0),
    ("--max-iterations", "4", "max_iterations", 4),
    ("--cell-timeout", "5", "cell_timeout", 5.0),
    ("--max-concurrency", "3", "max_concurrency", 3),
    ("--max-depth", "2", "max_depth", 2),
    ("--max-cost", "1.5", "max_cost", 1.5),
    ("--max-tokens", "1000", "max_tokens", 1000),
    ("--max-subcalls", "9", "max_subcalls", 9),
    ("--timeout", "60", "timeout", 60.0),
    ("--output-limit", "5000", "output_limit", 5000),
    ("--max-file-size", "2KB", "max_file_size", 2000),
    ("--max-memory-share", "0.3", "max_memory_share", 0.3),
    ("--sandbox", "none", "sandbox", "none"),
    ("--worker-memory", "256", "worker_memory_mb", 256),
]
SWITCH_SETTINGS = [
    ("--no-cache", "cache", False),
    ("--cache-root", "cache_root", True),
    ("--trace-full", "trace_full", True),
    ("--allow-weaker-sandbox", "allow_weaker_sandbox", True),
    ("--redact-secrets", "redact_secrets", True),
    ("--strict", "strict", True),
]


def header_settings(*args: str, trace: Path) -> dict[str, Any]:
    """The settings a run would have had: without a key it stops (exit 4) after loading them,
    and its trace header records them."""
    result = invoke_rlm("ask", "--trace", str(trace), *args, "q?", stdin=b"text")
    assert result.exit_code == 4, result.output
    settings: dict[str, Any] = read_trace(trace)[0]["settings"]
    return settings


def test_each_flag_lands_in_its_setting(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  m: {input: 1.0, output: 2.0}\n")
    args = [part for flag, value, _, _ in FLAG_SETTINGS for part in (flag, value)]
    args += [flag for flag, _, _ in SWITCH_SETTINGS] + ["--prices", str(prices)]
    settings = header_settings(*args, trace=tmp_path / "t.jsonl")
    expected = {name: value for _, _, name, value in FLAG_SETTINGS}
    expected |= {name: value for _, name, value in SWITCH_SETTINGS}
    expected |= {"prices": str(prices), "trace": str(tmp_path / "t.jsonl")}
    assert {name: settings.get(name) for name in expected} == expected


def test_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    settings = header_settings(trace=tmp_path / "t.jsonl")
    assert settings["max_iterations"] == 30 and settings["cell_timeout"] == 120
    assert settings["max_concurrency"] == 32 and settings["output_limit"] == 20_000
    assert settings["max_retries"] == 6 and settings["request_timeout"] == 600
    assert settings["max_depth"] == 1 and settings["sandbox"] == "process"
    assert settings["cache"] is True and settings["strict"] is False


def test_config_file_values_apply_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("max-iterations: 3\ncell_timeout: 9\nstrict: true\n")
    trace = tmp_path / "t.jsonl"
    settings = header_settings("--config", str(config), "--max-iterations", "1", trace=trace)
    chosen = (settings["max_iterations"], settings["cell_timeout"], settings["strict"])
    assert chosen == (1, 9, True)
    result = invoke_rlm(
        "ask", "--trace", str(trace), "q?", stdin=b"text", env={"RLM_CONFIG": str(config)}
    )
    assert result.exit_code == 4
    assert read_trace(trace)[0]["settings"]["cell_timeout"] == 9  # $RLM_CONFIG is read too


def test_a_run_refused_on_a_setting_keeps_the_flags_as_given_in_its_trace(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "t.jsonl"
    result = invoke_rlm(
        "ask", "--trace", str(trace), "--output-limit", "5", "--model", "m", "q?", stdin=b"text"
    )
    assert result.exit_code == 3
    records = read_trace(trace)
    assert records[0]["settings"]["output_limit"] == 5 and records[0]["settings"]["model"] == "m"
    assert "output_limit" in records[-1]["error"]


# ----- --dry-run, and the exits a run has -----


def test_dry_run_needs_no_key_and_calls_no_model(log: str) -> None:
    result = invoke_rlm("ask", "--dry-run", log, "q?")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("rlm: inputs: 1 file") and "est. cost $" in lines[0]
    assert lines[-1] == "rlm: dry run: no model was called"


def test_a_dry_run_with_json_prints_the_inputs_and_the_estimate_as_one_object(log: str) -> None:
    result = invoke_rlm("ask", "--dry-run", "--json", log, "q?")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and data["question"] == "q?"
    assert data["inputs"]["files"] == 1 and data["inputs"]["tokens_method"] == "exact"
    assert 0 < data["estimate"]["low_usd"] <= data["estimate"]["high_usd"]
    assert data["summary"] in result.stderr  # the same line a person sees


def test_dry_run_reads_piped_stdin(tmp_path: Path) -> None:
    result = invoke_rlm("ask", "--dry-run", "q?", stdin=b"piped text\n")
    assert result.exit_code == 0, result.output
    assert "rlm: inputs: 1 file" in result.stderr


def test_a_dry_run_and_inspect_leave_no_trace_even_when_they_fail(tmp_path: Path, log: str) -> None:
    """Neither is a run: a trace set by a flag or a config file is not written, nor replaced."""
    trace = tmp_path / "t.jsonl"
    config = tmp_path / "c.yaml"
    config.write_text(f"trace: {trace}\n")
    missing = str(tmp_path / "missing.log")
    assert invoke_rlm("ask", "--dry-run", "--trace", str(trace), log, "q?").exit_code == 0
    assert invoke_rlm("ask", "--dry-run", "--trace", str(trace), missing, "q?").exit_code == 2
    assert invoke_rlm("ask", "--dry-run", "--config", str(config), missing, "q?").exit_code == 2
    assert invoke_rlm("inspect", "--config", str(config), log).exit_code == 0
    assert invoke_rlm("inspect", "--config", str(config), missing).exit_code == 2
    assert not trace.exists()


def test_scripted_replies_running_out_exits_5(write_script: Callable[..., str]) -> None:
    script = write_script([repl("print(len(context))")])
    result = invoke_rlm("ask", "--provider", "scripted", "--script", script, "-q", "q?",
                        stdin=b"text")  # fmt: skip
    assert result.exit_code == 5, result.output
    assert "root replies" in one_error_line(result.stderr)


def test_a_limit_exits_6_and_strict_failed_subcalls_exit_7(
    write_script: Callable[..., str],
) -> None:
    limited = write_script([repl("x = 1"), repl("FINAL('partial')")], name="limit.yaml")
    result = invoke_rlm("ask", "--provider", "scripted", "--script", limited,
                        "--max-iterations", "1", "-q", "q?", stdin=b"text")  # fmt: skip
    assert result.exit_code == 6, result.output
    failing = write_script(
        [repl("r = llm_query_batched(['a hit', 'a miss'])"), repl("FINAL('done')")],
        [{"match": "hit", "reply": "found"}],
        name="fail.yaml",
    )
    result = invoke_rlm("ask", "--provider", "scripted", "--script", failing, "--strict", "-q",
                        "q?", stdin=b"text")  # fmt: skip
    assert result.exit_code == 7, result.output
    assert result.stdout == "done\n"


def test_an_unexpected_error_exits_1_with_one_line_and_debug_shows_where(
    log: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("rlm_cli.api.prepare", broken)
    result = invoke_rlm("ask", log, "q?")
    assert result.exit_code == 1, result.output
    line = one_error_line(result.stderr)
    assert "unexpected error" in line and "RuntimeError: boom" in line
    debug = invoke_rlm("ask", "--debug", log, "q?")
    assert debug.exit_code == 1
    assert "Traceback" in debug.stderr and debug.stderr.rstrip().endswith(line)


def test_version() -> None:
    result = invoke_rlm("--version")
    assert result.exit_code == 0 and result.stdout.startswith("rlm ")

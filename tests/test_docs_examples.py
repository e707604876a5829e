"""The examples users copy run: every `rlm` command in README.md's fenced blocks and in each
command's `--help` epilog, and the README's Python example, read from the docs themselves (a
renamed flag, a moved sample or a changed exit code fails here). Commands that can run offline
(the scripted provider, `trace`, `doctor`) run for real; those that need a hosted model run
with `--dry-run`, which checks their flags, settings and inputs and calls no model. The
README's exit-code table is checked against rlm_cli/errors.py."""

from __future__ import annotations

import gc
import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, command_paths, invoke_rlm

from rlm_cli.errors import EXIT_CODES

README = ROOT / "README.md"
# Names the docs use for the reader's own files; a scratch directory holds a stand-in for each.
# Anything else an example names (samples/, configs/) must exist in the checkout.
STAND_INS = {"server.log": "ERROR api\n", "big.log": "outage at 03:12\n", "src/app.py": "x = 1\n"}
# What every example may use from the checkout, by its path relative to the root.
FROM_CHECKOUT = ("samples", "configs", "README.md")


@dataclass(frozen=True)
class Example:
    """One documented command: where it is written, its words, and what it prints (if shown)."""

    where: str
    line: str
    shown: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.where}: {self.line}"


def readme_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced block; a fence of four backticks holds three."""
    blocks: list[tuple[str, list[str]]] = []
    fence: str | None = None
    language = ""
    lines: list[str] = []
    for line in text.splitlines():
        opening = re.match(r"^(`{3,})(\w*)\s*$", line)
        if fence is None and opening:
            fence, language, lines = opening.group(1), opening.group(2), []
        elif fence is not None and line.strip() == fence:
            blocks.append((language, lines))
            fence = None
        elif fence is not None:
            lines.append(line)
    return blocks


def shell_commands(lines: list[str], prompt: bool) -> list[tuple[str, list[str]]]:
    """(command, lines shown after it) of a shell block: `$ ` starts a command in a console
    block (every line does in bash/sh), a trailing backslash continues it."""
    found: list[tuple[str, list[str]]] = []
    pending = ""
    for line in lines:
        if pending:
            pending += " " + line.strip()
        elif not prompt or line.startswith("$ "):
            pending = line.removeprefix("$ ").strip()
        elif found:
            found[-1][1].append(line)
            continue
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
        else:
            found.append((pending, []))
            pending = ""
    return found


def readme_examples() -> list[Example]:
    examples = []
    for language, lines in readme_blocks(README.read_text()):
        if language not in ("console", "bash", "sh", "shell"):
            continue
        for command, shown in shell_commands(lines, prompt=language == "console"):
            if re.search(r"(^|\|\s*)rlm ", command):
                examples.append(Example("README.md", command, tuple(shown)))
    return examples


def epilog_examples() -> list[Example]:
    """Lines of a command's --help that start with `rlm ` or pipe into it."""
    examples = []
    for path in command_paths():
        shown = invoke_rlm(*path, "--help", env={"COLUMNS": "400"}).stdout
        for raw in shown.splitlines():
            line = raw.strip(" │|")  # Rich may frame the epilog
            if re.match(r"^(rlm |\S.*\|\s*rlm )", line) and "Usage:" not in line:
                examples.append(Example(f"rlm {' '.join(path)} --help".replace("  ", " "), line))
    return examples


EXAMPLES = readme_examples() + epilog_examples()


def test_the_docs_have_the_examples_this_test_is_about() -> None:
    """The parsers found them: a README rewrite that hides every example from them fails."""
    where = {example.where for example in EXAMPLES}
    assert "README.md" in where and "rlm ask --help" in where
    lines = [example.line for example in EXAMPLES]
    assert any("--provider scripted" in line or "scripted-demo" in line for line in lines)
    assert any(line.startswith("rlm trace show") for line in lines)
    assert len(EXAMPLES) >= 10


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the checkout's samples and configs, and the stand-ins."""
    for name in FROM_CHECKOUT:
        (tmp_path / name).symlink_to(ROOT / name)
    for name, text in STAND_INS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def runs_offline(args: list[str]) -> bool:
    """`rlm ask` on the scripted provider, named by a flag or by its config file."""
    if "--provider" in args:
        return args[args.index("--provider") + 1] == "scripted"
    if "--config" in args:
        config = yaml.safe_load(Path(args[args.index("--config") + 1]).read_text())
        return bool(config.get("provider") == "scripted")
    return False


def words(line: str) -> tuple[list[str], bytes]:
    """The arguments of `rlm` in a documented line, and its stdin (`cat FILE | rlm ...`)."""
    stdin = b""
    if "|" in line:
        feeder, line = (part.strip() for part in line.split("|", 1))
        cat = shlex.split(feeder)
        assert cat[0] == "cat" and len(cat) == 2, feeder
        stdin = Path(cat[1]).read_bytes()
    args = shlex.split(line, comments=True)
    assert args[0] == "rlm", line
    args = args[1:]
    if line.rstrip().endswith(" ..."):  # "and the rest as above": an input and a question
        args[-1:] = ["server.log", "Which service logged the most errors?"]
    return args, stdin


def record_a_demo_run(trace: str) -> None:
    """The trace examples read a run.jsonl: the scripted demo's, which has 3 iterations."""
    result = invoke_rlm(
        "ask", "--config", "configs/scripted-demo.yaml", "samples/haystack.log",
        "What is the access code?", "--trace", trace, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("example", EXAMPLES, ids=str)
def test_a_documented_command_runs(example: Example, scratch: Path) -> None:
    args, stdin = words(example.line)
    command = args[0]
    if command == "trace":
        record_a_demo_run(args[2])
    if command == "ask" and not runs_offline(args):
        # Needs a hosted model: check everything up to the first model call.
        result = invoke_rlm(*args, "--dry-run", stdin=stdin)
        assert result.exit_code == 0, f"{example}\n{result.output}"
        assert result.stderr.rstrip().endswith("rlm: dry run: no model was called")
        return
    result = invoke_rlm(*args, stdin=stdin)
    # `rlm doctor` documents exit 3 where a sandbox layer is missing.
    allowed = {0, 3} if command == "doctor" else {0}
    assert result.exit_code in allowed, f"{example}\n{result.output}"
    if command == "ask" and example.shown:
        # What the example shows of stdout (its lines that are not progress) is what it prints.
        shown = [line for line in example.shown if not line.startswith("rlm:") and line != "..."]
        assert result.stdout.splitlines() == shown, example
    for flag in ("-o", "--output"):
        if flag in args:
            assert Path(args[args.index(flag) + 1]).stat().st_size > 0


def test_the_python_example_runs(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (_, lines), *_ = [block for block in readme_blocks(README.read_text()) if block[0] == "python"]
    with warnings.catch_warnings():
        # The example reads its input with open(...).read(), as a short script does; the file
        # is closed when it is collected, which is a ResourceWarning to the strict suite.
        warnings.simplefilter("ignore", ResourceWarning)
        exec(compile("\n".join(lines), "README.md (From Python)", "exec"), {})
        gc.collect()
    answer, status = capsys.readouterr().out.split()[:2]
    assert status == "ok" and answer


# ----- the exit-code table -----


def readme_exit_codes() -> dict[int, str]:
    """The `| code | meaning |` rows under README's `## Exit codes`."""
    section = README.read_text().split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|\s*(\d+)\s*\|\s*(.+?)\s*\|\s*$", section, re.MULTILINE)
    return {int(code): meaning for code, meaning in rows}


def plain(text: str) -> str:
    return " ".join(text.replace("`", "").lower().split())


def test_the_readme_lists_exactly_the_exit_codes_of_errors_py() -> None:
    documented = readme_exit_codes()
    assert sorted(documented) == sorted(EXIT_CODES)
    for code, meaning in EXIT_CODES.items():
        # The README may say more; it starts by saying the same (up to a parenthesis or colon).
        head = re.split(r"\s*[(:]", meaning, maxsplit=1)[0]
        assert plain(documented[code]).startswith(plain(head)), (code, documented[code], meaning)

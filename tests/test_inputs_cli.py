"""`rlm inspect`, `rlm ask --dry-run`, the inputs summary line and bad inputs, through the real
command line in a subprocess."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ask_scripted, repl, run_rlm


def make_project(root: Path) -> Path:
    """A .gitignore, node_modules/, a PNG, a 0-byte file and nested text files."""
    files: dict[str, bytes] = {
        ".gitignore": b"node_modules/\n*.log\n",
        "node_modules/dep/index.js": b"module.exports = 1\n",
        "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "empty.txt": b"",
        "README.md": b"# readme\n",
        "src/app.py": b"print('app')\n",
        "src/lib/util.py": b"def util():\n    return 1\n",
        "src/debug.log": b"noise\n",
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def no_keys() -> dict[str, str]:
    return {"OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": "", "RLM_CONFIG": os.devnull}


@pytest.mark.slow
def test_inspect_names_every_file_and_every_skip(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    proc = run_rlm("inspect", str(root), "--json", env=no_keys())
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {row["path"]: row for row in data["files"]}
    loaded = sorted(path for path, row in rows.items() if row["status"] == "loaded")
    assert loaded == sorted(
        os.path.join(str(root), name)
        for name in (".gitignore", "README.md", "empty.txt", "src/app.py", "src/lib/util.py")
    )
    skipped = {path: row["status"] for path, row in rows.items() if row["status"] != "loaded"}
    assert skipped == {
        f"{root}/node_modules/": f"skipped: ignored: {root}/.gitignore:1 node_modules/",
        f"{root}/logo.png": "skipped: binary: data with a NUL byte in its first 8 KB",
        f"{root}/src/debug.log": f"skipped: ignored: {root}/.gitignore:2 *.log",
    }
    readme = rows[f"{root}/README.md"]
    assert (readme["size"], readme["encoding"]) == (9, "utf-8")
    assert readme["tokens"] > 0
    totals = data["totals"]
    assert totals["files"] == 5
    assert totals["skipped"] == 3
    assert totals["skipped_reasons"] == {"ignored": 2, "binary": 1}
    assert totals["tokens_method"] == "exact"
    cost = data["cost"]
    assert (cost["root_model"], cost["worker_model"]) == ("gpt-5", "gpt-5-mini")
    assert 0 < cost["low_usd"] < cost["high_usd"]


@pytest.mark.slow
def test_inspect_prints_a_table_totals_and_a_cost_range(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    with zipfile.ZipFile(root / "bundle.zip", "w") as archive:
        archive.writestr("inner/notes.txt", "notes\n")
    (root / "data.csv.gz").write_bytes(gzip.compress(b"id,name\n1,a\n"))
    proc = run_rlm(
        "inspect", str(root), "--model", "claude-sonnet-4-5", "--sub-model", "claude-haiku-4-5",
        "--provider", "anthropic", env=no_keys(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert f"{root}/bundle.zip/inner/notes.txt" in out
    assert "utf-8, gzip, csv" in out
    assert "skipped: binary" in out
    assert "inputs: 7 file(s)" in out and "skipped 3 (2 ignored, 1 binary)" in out
    assert "cost with root claude-sonnet-4-5 and worker claude-haiku-4-5: est. cost $" in out
    assert "low: the root model alone" in out


@pytest.mark.slow
def test_inspect_with_an_unpriced_model_says_the_cost_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("text")
    proc = run_rlm("inspect", str(tmp_path / "a.txt"), "--model", "mystery-model", env=no_keys())
    assert proc.returncode == 0, proc.stderr
    assert "cost unknown (no price for mystery-model" in proc.stdout.decode()


@pytest.mark.slow
def test_dry_run_prints_the_summary_and_calls_no_model(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    proc = run_rlm("ask", "--dry-run", str(root), "what is this?", env=no_keys())
    assert proc.returncode == 0, proc.stderr  # no API key was needed
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("rlm: inputs: 5 file(s) · ")
    assert "skipped 3 (2 ignored, 1 binary)" in lines[0]
    assert "est. cost $" in lines[0]
    assert lines[1] == "rlm: dry run: no model was called"


@pytest.mark.slow
def test_ask_prints_the_inputs_summary_before_the_first_model_call(
    tmp_path: Path, write_script: Callable[..., str]
) -> None:
    root = make_project(tmp_path / "project")
    script = write_script([repl("FINAL(sorted(context))")])
    proc = ask_scripted(script, "--view", "plain",
        "--exclude", "src/lib/", str(root), "which files?",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "['.gitignore', 'README.md', 'empty.txt', 'src/app.py']"
    lines = proc.stderr.decode().splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("rlm: inputs: "))
    first_call = next(i for i, line in enumerate(lines) if "iteration 1" in line)
    assert summary < first_call
    assert "skipped 4 (2 ignored, 1 " in lines[summary]
    assert "1 binary" in lines[summary] and "1 excluded" in lines[summary]
    assert "no cost (local or scripted models)" in lines[summary]


@pytest.mark.slow
def test_include_and_max_file_size_flags(tmp_path: Path, write_script: Callable[..., str]) -> None:
    root = make_project(tmp_path / "project")
    (root / "src" / "big.py").write_text("x = 1\n" * 1000)
    script = write_script([repl("FINAL(sorted(context))")])
    proc = ask_scripted(script, "-q", "--include", "*.py",
        "--max-file-size", "1KB", str(root), "which files?",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip() == "['src/app.py', 'src/lib/util.py']"


DROP_FILE_CAPS = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="root reads anything; needs setpriv to run without that power",
)
def test_files_and_folders_without_read_permission_exit_2(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    secret.chmod(0o000)
    closed = tmp_path / "closed"
    closed.mkdir()
    (closed / "a.txt").write_text("a")
    closed.chmod(0o000)
    # As root, drop the capabilities that bypass file permissions, as an ordinary user has none.
    prefix = DROP_FILE_CAPS if os.geteuid() == 0 else []
    for path, what in (
        (secret, "permission denied; check the file's permissions"),
        (closed, "cannot list the directory (Permission denied); check its permissions"),
    ):
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "rlm_cli", "inspect", str(path)],
            capture_output=True,
            timeout=60,
            env={**os.environ, **no_keys()},
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.decode() == f"rlm: error: {path}: {what}\n"
    closed.chmod(0o755)


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="root reads anything; needs setpriv to run without that power",
)
def test_an_unreadable_file_inside_a_directory_is_skipped_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    (tmp_path / "b.txt").chmod(0o000)
    prefix = DROP_FILE_CAPS if os.geteuid() == 0 else []
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "rlm_cli", "inspect", "--json", str(tmp_path)],
        capture_output=True,
        timeout=60,
        env={**os.environ, **no_keys()},
    )
    assert proc.returncode == 0, proc.stderr
    statuses = {row["path"]: row["status"] for row in json.loads(proc.stdout)["files"]}
    assert statuses == {
        f"{tmp_path}/a.txt": "loaded",
        f"{tmp_path}/b.txt": "skipped: unreadable: permission denied",
    }


@pytest.mark.slow
def test_file_names_that_are_not_utf8(tmp_path: Path, write_script: Callable[..., str]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    name = os.fsdecode(b"caf\xe9.txt")  # Latin-1 bytes: a str with a surrogate escape
    (tree / name).write_text("hello")
    (tree / "plain.txt").write_text("plain")
    proc = run_rlm("inspect", "--json", str(tree), env=no_keys())
    assert proc.returncode == 0, proc.stderr
    paths = [row["path"] for row in json.loads(proc.stdout)["files"]]
    assert paths == [f"{tree}/caf\ufffd.txt", f"{tree}/plain.txt"]
    table = run_rlm("inspect", str(tree), env=no_keys())
    assert table.returncode == 0, table.stderr
    script = write_script([repl("FINAL(sorted(context.values()))")])
    proc = ask_scripted(script, str(tree), "q?")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"['hello', 'plain']\n"


def bad_inputs(root: Path) -> dict[str, tuple[list[str], str]]:
    """Case -> (arguments, what the one error line must say)."""
    (root / "empty.txt").write_text("")
    (root / "empty_dir").mkdir()
    (root / "skipped").mkdir()
    (root / "skipped" / "blob.bin").write_bytes(b"\x00\x01")
    (root / ".git").mkdir()
    os.mkfifo(root / "pipe")
    (root / "big.txt").write_text("x" * 10_000)
    return {
        "missing": ([str(root / "missing.txt")], f"{root}/missing.txt: no such file or directory"),
        "fifo": ([str(root / "pipe")], f"{root}/pipe: a FIFO (named pipe), not a regular file"),
        "device": (["/dev/null"], "/dev/null: a character device, not a regular file"),
        "empty file": ([str(root / "empty.txt")], f"{root}/empty.txt: the file is empty"),
        "empty dir": ([str(root / "empty_dir")], f"{root}/empty_dir: the directory is empty"),
        "all skipped": (
            [str(root / "skipped")],
            f"{root}/skipped: every entry of the directory was skipped (1 binary)",
        ),
        "memory": (
            ["--max-memory-share", "0.0000000001", str(root / "big.txt")],
            "narrow them with --include/--exclude",
        ),
        "size flag": (["--max-file-size", "lots", str(root / "big.txt")], "--max-file-size 'lots'"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("command", ["ask", "inspect"])
def test_bad_inputs_exit_2_with_one_line_and_no_traceback(tmp_path: Path, command: str) -> None:
    for case, (args, expected) in bad_inputs(tmp_path).items():
        extra = ["question?"] if command == "ask" else []
        # A key is set (never used): settings and providers are checked before inputs.
        proc = run_rlm(command, *args, *extra, env={**no_keys(), "OPENAI_API_KEY": "sk-unused"})
        stderr = proc.stderr.decode()
        assert proc.returncode == 2, (case, stderr)
        assert stderr.startswith("rlm: error: ") and stderr.count("\n") == 1, (case, stderr)
        assert expected in stderr, (case, stderr)
        assert "Traceback" not in stderr
        assert proc.stdout == b""
    assert not (tmp_path / "missing.txt").exists()


def test_empty_stdin_exits_2() -> None:
    proc = run_rlm("inspect", stdin=b"", env=no_keys())
    assert proc.returncode == 2
    assert proc.stderr == b"rlm: error: standard input is empty; pipe some text in or give files\n"


@pytest.mark.slow
def test_inspect_reads_piped_stdin() -> None:
    proc = run_rlm("inspect", "--json", stdin=gzip.compress(b"a,b\n1,2\n"), env=no_keys())
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["files"]
    assert (row["path"], row["encoding"], row["size"]) == ("standard input", "utf-8, gzip", 8)

"""Resolving inputs: files, directories and stdin become Sources the worker loads by itself."""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
from pathlib import Path

import pytest

from rlm_cli.errors import UsageError
from rlm_cli.inputs import STDIN_NAME, Inputs, from_value, resolve


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temp files made by the code under test land in a directory of this test's own."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    return spool


def names(inputs: Inputs) -> list[str]:
    return [source.name for source in inputs.sources]


def test_single_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("some notes\n")
    inputs = resolve([str(path)], None)
    assert inputs.shape == "single"
    (source,) = inputs.sources
    assert source.name == str(path)
    assert source.path == str(path)
    assert source.size == len("some notes\n")
    assert source.encoding == "utf-8"
    assert source.format == "text"
    assert inputs.skipped == []
    assert inputs.temp_paths == []


def test_relative_file_name_is_kept_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.txt").write_text("a")
    monkeypatch.chdir(tmp_path)
    inputs = resolve(["a.txt"], None)
    assert names(inputs) == ["a.txt"]
    assert inputs.sources[0].path == str(tmp_path / "a.txt")  # absolute for the worker


def test_files_and_a_directory_make_a_dict_in_argument_order(tmp_path: Path) -> None:
    first = tmp_path / "zz_first.txt"
    first.write_text("first")
    last = tmp_path / "aa_last.txt"
    last.write_text("last")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "b.txt").write_text("b")
    (tree / "a.txt").write_text("a")
    (tree / "sub" / "c.txt").write_text("c")
    (tree / "B.txt").write_text("upper b")
    inputs = resolve([str(first), str(tree), str(last)], None)
    assert inputs.shape == "dict"
    assert names(inputs) == [str(first), "B.txt", "a.txt", "b.txt", "sub/c.txt", str(last)]
    assert inputs.sources[4].path == str(tree / "sub" / "c.txt")
    assert inputs.summary()["files"] == 6
    assert inputs.summary()["shape"] == "dict"


def test_two_files_make_a_dict(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("1")
    (tmp_path / "two.txt").write_text("2")
    inputs = resolve([str(tmp_path / "two.txt"), str(tmp_path / "one.txt")], None)
    assert inputs.shape == "dict"
    assert names(inputs) == [str(tmp_path / "two.txt"), str(tmp_path / "one.txt")]


def test_a_directory_with_one_file_is_still_a_dict(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "only.txt").write_text("only")
    inputs = resolve([str(tree)], None)
    assert inputs.shape == "dict"
    assert names(inputs) == ["only.txt"]


def test_vcs_dirs_and_binary_files_are_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "repo"
    (tree / ".git" / "objects").mkdir(parents=True)
    (tree / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tree / ".git" / "objects" / "ab").write_text("text inside .git")
    (tree / "src").mkdir()
    (tree / "src" / ".git").mkdir()  # nested VCS dirs too
    (tree / "src" / ".git" / "config").write_text("[core]\n")
    (tree / "src" / "main.py").write_text("print('hi')\n")
    (tree / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tree / "late_nul.txt").write_bytes(b"a" * 5000 + b"\x00")
    (tree / "README.md").write_text("# readme\n")
    inputs = resolve([str(tree)], None)
    assert names(inputs) == ["README.md", "src/main.py"]
    assert all(".git" not in source.path for source in inputs.sources)
    skipped = dict(inputs.skipped)
    assert skipped[str(tree / "logo.png")] == "binary"
    assert skipped[str(tree / "late_nul.txt")] == "binary"
    assert inputs.summary()["skipped"] == len(inputs.skipped)


def test_empty_files_inside_a_directory_are_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "empty.txt").write_text("")
    (tree / "full.txt").write_text("x")
    inputs = resolve([str(tree)], None)
    assert names(inputs) == ["full.txt"]
    assert str(tree / "empty.txt") in dict(inputs.skipped)


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(UsageError, match="no such file") as caught:
        resolve([str(missing)], None)
    assert str(missing) in str(caught.value)
    assert caught.value.exit_code == 2


def test_empty_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UsageError, match="empty") as caught:
        resolve([str(empty)], None)
    assert str(empty) in str(caught.value)


def test_empty_directory_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(UsageError) as caught:
        resolve([str(empty)], None)
    assert str(empty) in str(caught.value)


def test_directory_of_only_skipped_files_is_a_usage_error(tmp_path: Path) -> None:
    tree = tmp_path / "bin_only"
    (tree / ".git").mkdir(parents=True)
    (tree / ".git" / "HEAD").write_text("ref\n")
    (tree / "blob.bin").write_bytes(b"\x00\x01")
    with pytest.raises(UsageError) as caught:
        resolve([str(tree)], None)
    assert str(tree) in str(caught.value)


def test_fifo_is_a_usage_error(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="not a regular file") as caught:
        resolve([str(fifo)], None)  # must not open (and block on) the FIFO
    assert str(fifo) in str(caught.value)


def test_fifo_inside_a_directory_is_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    os.mkfifo(tree / "pipe")
    (tree / "ok.txt").write_text("ok")
    inputs = resolve([str(tree)], None)
    assert names(inputs) == ["ok.txt"]
    assert str(tree / "pipe") in dict(inputs.skipped)


def test_an_error_after_stdin_removes_the_spool_file(tmp_path: Path, private_tempdir: Path) -> None:
    with pytest.raises(UsageError):
        resolve(["-", str(tmp_path / "missing.txt")], io.BytesIO(b"piped"))
    assert list(private_tempdir.iterdir()) == []


def test_duplicate_names_are_a_usage_error(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "same.txt").write_text(name)
    with pytest.raises(UsageError, match=r"same\.txt"):
        resolve([str(tmp_path / "one"), str(tmp_path / "two")], None)


def test_no_input_at_all_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        resolve([], None)
    with pytest.raises(UsageError, match="'-'"):
        resolve(["-"], None)


def test_encoding_is_sniffed_from_the_bom(tmp_path: Path) -> None:
    cases = {
        "utf8.txt": (b"\xef\xbb\xbfhi", "utf-8-sig"),
        "utf16le.txt": ("\ufeffhi".encode("utf-16-le"), "utf-16"),
        "utf16be.txt": ("\ufeffhi".encode("utf-16-be"), "utf-16"),
        "utf32.txt": ("hi".encode("utf-32"), "utf-32"),
        "plain.txt": (b"hi", "utf-8"),
    }
    for name, (data, _encoding) in cases.items():
        (tmp_path / name).write_bytes(data)
    inputs = resolve([str(tmp_path / name) for name in cases], None)
    assert [source.encoding for source in inputs.sources] == [enc for _d, enc in cases.values()]


# ----- stdin -----


def test_stdin_is_spooled_to_a_private_temp_file(private_tempdir: Path) -> None:
    data = b"piped text\n" * 1000
    inputs = resolve([], io.BytesIO(data))
    assert inputs.shape == "single"
    (source,) = inputs.sources
    assert source.name == STDIN_NAME
    assert source.size == len(data)
    assert inputs.temp_paths == [source.path]
    assert Path(source.path).parent == private_tempdir
    assert Path(source.path).read_bytes() == data
    assert stat.S_IMODE(os.stat(source.path).st_mode) == 0o600
    inputs.cleanup()
    assert not os.path.exists(source.path)
    assert inputs.temp_paths == []
    inputs.cleanup()  # twice is harmless


def test_dash_reads_stdin_among_files(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("file")
    inputs = resolve([str(tmp_path / "f.txt"), "-"], io.BytesIO(b"\xff\xfeh\x00i\x00"))
    try:
        assert inputs.shape == "dict"
        assert names(inputs) == [str(tmp_path / "f.txt"), STDIN_NAME]
        assert inputs.sources[1].encoding == "utf-16"
    finally:
        inputs.cleanup()


def test_empty_stdin_is_a_usage_error(private_tempdir: Path) -> None:
    with pytest.raises(UsageError, match="empty"):
        resolve([], io.BytesIO(b""))
    assert list(private_tempdir.iterdir()) == []  # the spool file is removed


# ----- values -----


def test_from_value_str(private_tempdir: Path) -> None:
    text = "héllo\r\nwörld\n"
    inputs = from_value(text)
    (source,) = inputs.sources
    assert inputs.shape == "single"
    assert source.format == "text"
    assert source.encoding == "utf-8"
    assert Path(source.path).parent == private_tempdir
    assert Path(source.path).read_bytes() == text.encode("utf-8")  # newlines untouched
    assert source.size == len(text.encode("utf-8"))
    assert stat.S_IMODE(os.stat(source.path).st_mode) == 0o600
    inputs.cleanup()
    assert not os.path.exists(source.path)


def test_from_value_dict() -> None:
    value = {"b": [1, 2, {"x": None}], "a": "ünïcode"}
    inputs = from_value(value)
    (source,) = inputs.sources
    assert inputs.shape == "single"
    assert source.format == "json"
    loaded = json.loads(Path(source.path).read_text(encoding="utf-8"))
    assert loaded == value
    assert list(loaded) == ["b", "a"]
    assert source.wire()["format"] == "json"
    inputs.cleanup()
    assert not os.path.exists(source.path)


# ----- inputs are read-only -----


def test_input_files_are_never_modified(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    files = {
        tmp_path / "top.txt": b"top\r\n",
        tree / "a.txt": b"\xef\xbb\xbfbom text",
        tree / "sub" / "b.bin": b"\x00binary",
        tree / "sub" / "c.txt": "ütf-16".encode("utf-16"),
    }
    for path, data in files.items():
        path.write_bytes(data)
        os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = {path: (path.read_bytes(), os.stat(path).st_mtime_ns) for path in files}
    dir_mtimes = {d: os.stat(d).st_mtime_ns for d in (tmp_path, tree, tree / "sub")}
    inputs = resolve([str(tmp_path / "top.txt"), str(tree)], None)
    inputs.cleanup()
    assert {path: (path.read_bytes(), os.stat(path).st_mtime_ns) for path in files} == before
    assert {d: os.stat(d).st_mtime_ns for d in dir_mtimes} == dir_mtimes  # nothing created
    assert inputs.temp_paths == []

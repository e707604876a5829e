"""Resolving inputs: files, directories, archives and stdin become Sources the worker loads.

Real files in tmp_path throughout; the worker side is in test_inputs_worker.py, the commands in
test_inputs_cli.py.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from rlm_cli.errors import UsageError
from rlm_cli.inputs import STDIN_NAME, InputOptions, Inputs, from_value
from rlm_cli.inputs.resolve import resolve


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temp files made by the code under test land in a directory of this test's own."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    return spool


def names(inputs: Inputs) -> list[str]:
    return [source.name for source in inputs.sources]


def skips(inputs: Inputs) -> dict[str, str]:
    """Skipped path -> reason."""
    return {skip.path: skip.reason for skip in inputs.skipped}


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


# ----- files and shapes -----


def test_single_file(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "some notes\n")
    inputs = resolve([str(path)], None)
    assert inputs.shape == "single"
    (source,) = inputs.sources
    assert source.name == str(path)
    assert source.path == str(path)
    assert source.size == len("some notes\n")
    assert (source.encoding, source.bom, source.format) == ("utf-8", 0, "text")
    assert source.compression is None and source.archive is None
    assert inputs.skipped == []
    assert inputs.temp_paths == []
    assert inputs.tokens_method == "exact"
    assert source.tokens == 3  # "some", " notes", "\n"


def test_relative_file_name_is_kept_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "a.txt", "a")
    monkeypatch.chdir(tmp_path)
    inputs = resolve(["a.txt"], None)
    assert names(inputs) == ["a.txt"]
    assert inputs.sources[0].path == str(tmp_path / "a.txt")  # absolute for the worker


def test_files_and_a_directory_make_a_dict_in_argument_order(tmp_path: Path) -> None:
    first = write(tmp_path / "zz_first.txt", "first")
    last = write(tmp_path / "aa_last.txt", "last")
    tree = tmp_path / "tree"
    write(tree / "b.txt", "b")
    write(tree / "a.txt", "a")
    write(tree / "sub" / "c.txt", "c")
    write(tree / "B.txt", "upper b")
    write(tree / "a.d" / "x.txt", "dot folder")
    inputs = resolve([str(first), str(tree), str(last)], None)
    assert inputs.shape == "dict"
    assert names(inputs) == [
        str(first),
        "B.txt",
        "a.d/x.txt",
        "a.txt",
        "b.txt",
        "sub/c.txt",
        str(last),
    ]
    assert inputs.sources[5].path == str(tree / "sub" / "c.txt")
    assert inputs.sources[5].display == os.path.join(str(tree), "sub/c.txt")
    assert inputs.summary()["files"] == 7
    assert inputs.summary()["shape"] == "dict"


def test_order_is_deterministic(tmp_path: Path) -> None:
    for index in range(30):
        write(tmp_path / f"d{index % 4}" / f"f{(index * 7) % 30}.txt", str(index))
    first = resolve([str(tmp_path)], None)
    second = resolve([str(tmp_path)], None)
    assert names(first) == names(second) == sorted(names(first))


def test_two_files_make_a_dict(tmp_path: Path) -> None:
    write(tmp_path / "one.txt", "1")
    write(tmp_path / "two.txt", "2")
    inputs = resolve([str(tmp_path / "two.txt"), str(tmp_path / "one.txt")], None)
    assert inputs.shape == "dict"
    assert names(inputs) == [str(tmp_path / "two.txt"), str(tmp_path / "one.txt")]


def test_a_directory_with_one_file_is_still_a_dict(tmp_path: Path) -> None:
    write(tmp_path / "tree" / "only.txt", "only")
    inputs = resolve([str(tmp_path / "tree")], None)
    assert inputs.shape == "dict"
    assert names(inputs) == ["only.txt"]


def test_duplicate_names_are_a_usage_error(tmp_path: Path) -> None:
    for name in ("one", "two"):
        write(tmp_path / name / "same.txt", name)
    with pytest.raises(UsageError, match=r"same\.txt"):
        resolve([str(tmp_path / "one"), str(tmp_path / "two")], None)


# ----- directories: what git would track -----


def make_project(root: Path) -> None:
    """The acceptance tree: a .gitignore, node_modules/, a PNG, a 0-byte file, nested text."""
    write(root / ".gitignore", "node_modules/\n*.log\n!keep.log\n/build\n")
    write(root / "node_modules" / "left-pad" / "index.js", "module.exports = 1\n")
    write(root / "logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    write(root / "empty.txt", "")
    write(root / "README.md", "# project\n")
    write(root / "src" / "app.py", "print('app')\n")
    write(root / "src" / "lib" / "util.py", "def util():\n    return 1\n")
    write(root / "src" / "debug.log", "noise\n")
    write(root / "src" / "keep.log", "kept\n")
    write(root / "build" / "out.txt", "built\n")
    write(root / "docs" / "build" / "guide.md", "anchored /build does not match here\n")
    write(root / "docs" / ".gitignore", "*.tmp\n")
    write(root / "docs" / "draft.tmp", "draft\n")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
def test_a_directory_loads_exactly_what_git_would_track_minus_binaries(tmp_path: Path) -> None:
    root = tmp_path / "project"
    make_project(root)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    git_tracks = sorted(name for name in listed if name != "logo.png")
    inputs = resolve([str(root)], None)
    assert names(inputs) == git_tracks
    assert "empty.txt" in git_tracks and "src/keep.log" in git_tracks
    assert skips(inputs) == {
        str(root / ".git") + "/": "version control",
        str(root / "build") + "/": "ignored",
        str(root / "docs" / "draft.tmp"): "ignored",
        str(root / "logo.png"): "binary",
        str(root / "node_modules") + "/": "ignored",
        str(root / "src" / "debug.log"): "ignored",
    }
    details = {skip.path: skip.detail for skip in inputs.skipped}
    assert details[str(root / "node_modules") + "/"].endswith(".gitignore:1 node_modules/")
    assert details[str(root / "docs" / "draft.tmp")].endswith("docs/.gitignore:1 *.tmp")
    assert inputs.skip_counts() == {"ignored": 4, "version control": 1, "binary": 1}
    empty = next(source for source in inputs.sources if source.name == "empty.txt")
    assert empty.size == 0 and empty.tokens == 0


def test_an_ignored_folder_cannot_be_re_included_but_rlmignore_can_re_include_files(
    tmp_path: Path,
) -> None:
    write(tmp_path / ".gitignore", "logs/\n*.csv\n")
    write(tmp_path / "logs" / ".gitignore", "!*.txt\n")
    write(tmp_path / "logs" / "a.txt", "git never looks inside an ignored folder")
    write(tmp_path / "data.csv", "a,b\n")
    write(tmp_path / "big.csv", "a,b\n")
    write(tmp_path / "notes.md", "notes")
    write(tmp_path / "secret.md", "secret")
    write(tmp_path / ".rlmignore", "!data.csv\nsecret.md\n")
    inputs = resolve([str(tmp_path)], None)
    assert names(inputs) == [".gitignore", ".rlmignore", "data.csv", "notes.md"]
    reasons = {skip.path: skip.detail for skip in inputs.skipped}
    assert reasons[str(tmp_path / "secret.md")].endswith(".rlmignore:2 secret.md")
    assert reasons[str(tmp_path / "big.csv")].endswith(".gitignore:2 *.csv")


def test_ignore_files_above_the_directory_apply_inside_a_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git" / "info").mkdir(parents=True)
    write(repo / ".git" / "info" / "exclude", "*.secret\n")
    write(repo / ".gitignore", "*.log\nvendor/\n")
    write(repo / "src" / "a.py", "a")
    write(repo / "src" / "b.log", "log")
    write(repo / "src" / "c.secret", "secret")
    inputs = resolve([str(repo / "src")], None)
    assert names(inputs) == ["a.py"]
    assert set(skips(inputs).values()) == {"ignored"}
    # Naming an ignored folder on purpose loads it: its own ignore rule does not apply inside.
    write(repo / "vendor" / "lib.py", "lib")
    assert names(resolve([str(repo / "vendor")], None)) == ["lib.py"]


def test_ignore_files_above_the_directory_do_not_apply_outside_a_repository(
    tmp_path: Path,
) -> None:
    write(tmp_path / ".gitignore", "*.log\n")
    write(tmp_path / "src" / "b.log", "log")
    assert names(resolve([str(tmp_path / "src")], None)) == ["b.log"]


def test_vcs_folders_are_skipped_at_any_depth(tmp_path: Path) -> None:
    tree = tmp_path / "repo"
    write(tree / ".git" / "HEAD", "ref: refs/heads/main\n")
    write(tree / ".hg" / "store" / "x", "hg")
    write(tree / ".svn" / "entries", "svn")
    write(tree / "src" / ".git" / "config", "[core]\n")  # nested repositories too
    write(tree / "sub" / ".git", "gitdir: ../.git/modules/sub\n")  # a submodule's .git file
    write(tree / "src" / "main.py", "print('hi')\n")
    inputs = resolve([str(tree)], None)
    assert names(inputs) == ["src/main.py"]
    assert sorted(skips(inputs)) == sorted(
        [
            str(tree / ".git") + "/",
            str(tree / ".hg") + "/",
            str(tree / ".svn") + "/",
            str(tree / "src" / ".git") + "/",
            str(tree / "sub" / ".git"),
        ]
    )
    assert set(skips(inputs).values()) == {"version control"}


def test_binary_files_are_skipped_by_a_nul_in_the_first_8_kb(tmp_path: Path) -> None:
    write(tmp_path / "late_nul.txt", b"a" * 5000 + b"\x00")
    write(tmp_path / "very_late_nul.txt", b"a" * 9000 + b"\x00")  # as git: text
    write(tmp_path / "program", bytes(range(256)) * 4)
    inputs = resolve([str(tmp_path)], None)
    assert names(inputs) == ["very_late_nul.txt"]
    assert skips(inputs) == {
        str(tmp_path / "late_nul.txt"): "binary",
        str(tmp_path / "program"): "binary",
    }


def test_files_over_the_per_file_cap_are_skipped_in_directories_only(tmp_path: Path) -> None:
    write(tmp_path / "big.txt", "x" * 2000)
    write(tmp_path / "small.txt", "x" * 100)
    inputs = resolve([str(tmp_path)], None, InputOptions(max_file_bytes=1000))
    assert names(inputs) == ["small.txt"]
    (skip,) = inputs.skipped
    assert (skip.path, skip.reason) == (str(tmp_path / "big.txt"), "too large")
    assert skip.detail == "2.0 KB, over the 1.0 KB limit per file"
    # Named on its own, a file is what the user asked for: the cap does not apply.
    big = resolve([str(tmp_path / "big.txt")], None, InputOptions(max_file_bytes=1000))
    assert big.sources[0].size == 2000


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    write(tmp_path / "src" / "a.py", "a")
    write(tmp_path / "src" / "b.js", "b")
    write(tmp_path / "src" / "vendor.min.js", "min")
    write(tmp_path / "tests" / "test_a.py", "t")
    write(tmp_path / "README.md", "r")
    only_py = resolve([str(tmp_path)], None, InputOptions(include=("*.py",)))
    assert names(only_py) == ["src/a.py", "tests/test_a.py"]
    assert set(skips(only_py).values()) == {"not included"}
    assert len(only_py.skipped) == 3  # each file left out is counted
    no_tests = resolve([str(tmp_path)], None, InputOptions(exclude=("tests/", "*.min.js")))
    assert names(no_tests) == ["README.md", "src/a.py", "src/b.js"]
    assert skips(no_tests) == {
        str(tmp_path / "src" / "vendor.min.js"): "excluded",
        str(tmp_path / "tests") + "/": "excluded",
    }
    both = resolve([str(tmp_path)], None, InputOptions(include=("src/**",), exclude=("*.js",)))
    assert names(both) == ["src/a.py"]


def test_symlinks_are_followed_and_loops_are_safe(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tree / "real" / "a.txt", "a")
    write(tmp_path / "outside.txt", "outside")
    (tree / "real" / "loop").symlink_to(tree)  # back to an ancestor
    (tree / "self").symlink_to(tree / "self")  # a link to itself
    (tree / "broken").symlink_to(tmp_path / "missing")
    (tree / "link.txt").symlink_to(tmp_path / "outside.txt")
    inputs = resolve([str(tree)], None)
    assert names(inputs) == ["link.txt", "real/a.txt"]
    assert inputs.sources[0].path == str(tree / "link.txt")
    assert skips(inputs) == {
        str(tree / "broken"): "unreadable",
        str(tree / "real" / "loop") + "/": "symlink loop",
        str(tree / "self"): "symlink loop",
    }


def test_special_files_inside_a_directory_are_skipped(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    write(tree / "ok.txt", "ok")
    os.mkfifo(tree / "pipe")
    inputs = resolve([str(tree)], None)  # must not open (and block on) the FIFO
    assert names(inputs) == ["ok.txt"]
    (skip,) = inputs.skipped
    assert (skip.path, skip.reason, skip.detail) == (
        str(tree / "pipe"),
        "not a regular file",
        "a FIFO (named pipe)",
    )


# ----- encodings -----


def test_encoding_and_bom_are_sniffed(tmp_path: Path) -> None:
    cases = {
        "utf8bom.txt": (b"\xef\xbb\xbfhi", "utf-8", 3),
        "utf16le.txt": ("\ufeffhi".encode("utf-16-le"), "utf-16-le", 2),
        "utf16be.txt": ("\ufeffhi".encode("utf-16-be"), "utf-16-be", 2),
        "utf32le.txt": ("\ufeffhi".encode("utf-32-le"), "utf-32-le", 4),
        "utf32be.txt": ("\ufeffhi".encode("utf-32-be"), "utf-32-be", 4),
        "plain.txt": (b"hi", "utf-8", 0),
    }
    for name, (data, _encoding, _bom) in cases.items():
        write(tmp_path / name, data)
    inputs = resolve([str(tmp_path / name) for name in cases], None)
    assert [(s.encoding, s.bom) for s in inputs.sources] == [
        (encoding, bom) for _data, encoding, bom in cases.values()
    ]
    assert all(source.invalid_bytes == 0 for source in inputs.sources)


def test_invalid_utf8_bytes_are_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.txt", b"caf\xe9 ok \xff\xfe end \xe2\x82\n")
    inputs = resolve([str(path)], None)
    assert inputs.sources[0].invalid_bytes == 5
    assert inputs.invalid_bytes == 5
    assert inputs.summary()["invalid_bytes"] == 5


def test_invalid_bytes_across_chunk_boundaries_are_counted_once(tmp_path: Path) -> None:
    # A valid 3-byte character split by the 1 MiB chunk boundary is not invalid.
    data = b"a" * ((1 << 20) - 1) + "€".encode() + b"b" * 100 + b"\xff"
    inputs = resolve([str(write(tmp_path / "x.txt", data))], None)
    assert inputs.sources[0].invalid_bytes == 1


# ----- compressed files and archives -----


def test_gz_bz2_and_xz_files_are_decompressed(tmp_path: Path) -> None:
    text = b"line one\r\nline two\n" * 100
    write(tmp_path / "a.log.gz", gzip.compress(text))
    write(tmp_path / "b.log.bz2", bz2.compress(text))
    write(tmp_path / "c.log.xz", lzma.compress(text))
    write(tmp_path / "d.log", gzip.compress(text))  # found by its magic bytes, not its name
    paths = [str(tmp_path / name) for name in ("a.log.gz", "b.log.bz2", "c.log.xz", "d.log")]
    inputs = resolve(paths, None)
    assert [s.compression for s in inputs.sources] == ["gzip", "bz2", "xz", "gzip"]
    assert all(s.size == len(text) for s in inputs.sources)
    assert all(s.tokens == inputs.sources[0].tokens for s in inputs.sources)


def test_a_single_gz_file_is_one_text(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv.gz", gzip.compress(b"id,name\n1,ann\n"))
    inputs = resolve([str(path)], None)
    assert inputs.shape == "single"
    assert inputs.sources[0].kind == "csv"
    assert inputs.sources[0].preview == "header (2 columns): id,name"


def test_corrupt_compressed_files(tmp_path: Path) -> None:
    bad = write(tmp_path / "tree" / "bad.gz", gzip.compress(b"hello world\n" * 100)[:40])
    write(tmp_path / "tree" / "ok.txt", "ok")
    with pytest.raises(UsageError, match="not valid gzip data") as caught:
        resolve([str(bad)], None)
    assert str(bad) in str(caught.value)
    inputs = resolve([str(tmp_path / "tree")], None)
    assert skips(inputs) == {str(bad): "corrupt"}


def test_compressed_binary_is_skipped(tmp_path: Path) -> None:
    write(tmp_path / "blob.gz", gzip.compress(bytes(range(256))))
    write(tmp_path / "ok.txt", "ok")
    inputs = resolve([str(tmp_path)], None)
    assert skips(inputs) == {str(tmp_path / "blob.gz"): "binary"}


def test_a_compressed_file_over_the_cap_stops_early(tmp_path: Path) -> None:
    write(tmp_path / "huge.txt.gz", gzip.compress(b"x" * 5_000_000))
    write(tmp_path / "ok.txt", "ok")
    inputs = resolve([str(tmp_path)], None, InputOptions(max_file_bytes=100_000))
    (skip,) = inputs.skipped
    assert skip.reason == "too large" and "decompressed" in skip.detail


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as archive:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


THREE = {"docs/b.md": b"# B\n", "a.txt": b"alpha\n", "docs/c.txt": b"gamma\n"}


def test_a_zip_of_three_text_files_makes_three_entries(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "bundle.zip", THREE)
    inputs = resolve([str(archive)], None)
    assert inputs.shape == "dict"  # even one archive: its members are the entries
    assert names(inputs) == [f"{archive}/a.txt", f"{archive}/docs/b.md", f"{archive}/docs/c.txt"]
    assert [s.member for s in inputs.sources] == ["a.txt", "docs/b.md", "docs/c.txt"]
    assert all(s.archive == "zip" and s.path == str(archive) for s in inputs.sources)
    assert [s.size for s in inputs.sources] == [6, 4, 6]


@pytest.mark.parametrize(
    ("suffix", "mode"),
    [
        (".tar", "w"),
        (".tar.gz", "w:gz"),
        (".tgz", "w:gz"),
        (".tar.bz2", "w:bz2"),
        (".tar.xz", "w:xz"),
    ],
)
def test_tar_archives_expand_into_their_members(tmp_path: Path, suffix: str, mode: str) -> None:
    archive = make_tar(tmp_path / f"bundle{suffix}", {"./" + k: v for k, v in THREE.items()}, mode)
    inputs = resolve([str(archive)], None)
    # Names are clean paths ("./a.txt" is a.txt); the stored name is kept for the worker.
    assert names(inputs) == [f"{archive}/a.txt", f"{archive}/docs/b.md", f"{archive}/docs/c.txt"]
    assert [s.member for s in inputs.sources] == ["./a.txt", "./docs/b.md", "./docs/c.txt"]
    assert all(s.archive == "tar" for s in inputs.sources)


def test_archive_members_pass_through_the_same_filters(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "repo.zip",
        {
            ".gitignore": b"*.log\nbuild/\n",
            "src/a.py": b"a = 1\n",
            "src/b.log": b"log\n",
            "build/out.txt": b"built\n",
            "build/more.txt": b"built\n",
            ".git/HEAD": b"ref\n",
            ".git/config": b"[core]\n",
            "logo.png": b"\x89PNG\r\n\x1a\n\x00\x00",
            "inner.zip": b"PK\x03\x04 not expanded",
            "big.txt": b"x" * 5000,
            "empty.txt": b"",
        },
    )
    inputs = resolve([str(archive)], None, InputOptions(max_file_bytes=1000))
    assert names(inputs) == [f"{archive}/.gitignore", f"{archive}/empty.txt", f"{archive}/src/a.py"]
    assert skips(inputs) == {
        f"{archive}/.git/": "version control",
        f"{archive}/big.txt": "too large",
        f"{archive}/build/": "ignored",
        f"{archive}/inner.zip": "nested archive",
        f"{archive}/logo.png": "binary",
        f"{archive}/src/b.log": "ignored",
    }
    only_py = resolve([str(archive)], None, InputOptions(include=("*.py",)))
    assert names(only_py) == [f"{archive}/src/a.py"]


def test_archive_paths_that_escape_are_refused(tmp_path: Path) -> None:
    zipped = make_zip(
        tmp_path / "evil.zip",
        {
            "../../etc/passwd": b"root\n",
            "/abs.txt": b"abs\n",
            "a/../../up.txt": b"up\n",
            "ok.txt": b"ok\n",
        },
    )
    inputs = resolve([str(zipped)], None)
    assert names(inputs) == [f"{zipped}/ok.txt"]
    assert sorted(skip.reason for skip in inputs.skipped) == ["unsafe path"] * 3
    tarred = make_tar(tmp_path / "evil.tar.gz", {"../escape.txt": b"x\n", "ok.txt": b"ok\n"})
    inputs = resolve([str(tarred)], None)
    assert names(inputs) == [f"{tarred}/ok.txt"]
    assert [skip.reason for skip in inputs.skipped] == ["unsafe path"]


def test_links_in_tar_archives_are_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as archive:
        link = tarfile.TarInfo("passwd")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        archive.addfile(link)
        info = tarfile.TarInfo("ok.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"ok\n"))
    inputs = resolve([str(path)], None)
    assert names(inputs) == [f"{path}/ok.txt"]
    assert skips(inputs) == {f"{path}/passwd": "link in archive"}


def test_archives_inside_a_directory_expand_under_their_path(tmp_path: Path) -> None:
    make_zip(tmp_path / "tree" / "data" / "bundle.zip", {"x.txt": b"x\n"})
    write(tmp_path / "tree" / "y.txt", "y")
    inputs = resolve(
        [str(tmp_path / "tree")], None, InputOptions(exclude=("data/bundle.zip/x.txt",))
    )
    assert names(inputs) == ["y.txt"]
    inputs = resolve([str(tmp_path / "tree")], None)
    assert names(inputs) == ["data/bundle.zip/x.txt", "y.txt"]


def test_empty_and_corrupt_archives(tmp_path: Path) -> None:
    empty = make_zip(tmp_path / "empty.zip", {})
    with pytest.raises(UsageError, match="the archive is empty") as caught:
        resolve([str(empty)], None)
    assert str(empty) in str(caught.value)
    skipped_all = make_zip(tmp_path / "bin.zip", {"a.bin": b"\x00\x01"})
    with pytest.raises(UsageError, match=r"every entry of the archive was skipped \(1 binary\)"):
        resolve([str(skipped_all)], None)
    corrupt = write(tmp_path / "corrupt.zip", b"PK\x03\x04 this is no zip")
    with pytest.raises(UsageError, match="not valid zip data") as caught:
        resolve([str(corrupt)], None)
    assert str(caught.value).startswith(str(corrupt))


# ----- structured text -----


def test_structured_formats_get_a_preview(tmp_path: Path) -> None:
    write(tmp_path / "a.csv", "id,name,city\n1,Ann,Oslo\n")
    write(tmp_path / "b.tsv", "id\tname\n1\tAnn\n")
    write(tmp_path / "c.json", json.dumps([{"id": 1, "name": "Ann"}, {"id": 2}], indent=2))
    write(tmp_path / "d.jsonl", '{"id": 1}\n{"id": 2}\n')
    write(tmp_path / "e.json", '{"config": {"deep": true}}')
    write(tmp_path / "f.txt", "just text")
    inputs = resolve([str(tmp_path)], None)
    found = {s.name: (s.kind, s.preview) for s in inputs.sources}
    assert found == {
        "a.csv": ("csv", "header (3 columns): id,name,city"),
        "b.tsv": ("tsv", "header (2 columns): id\tname"),
        "c.json": ("json", 'a top-level array; first element: {"id": 1, "name": "Ann"}'),
        "d.jsonl": ("jsonl", 'first record: {"id": 1}'),
        "e.json": ("json", 'a top-level object starting: {"config": {"deep": true}}'),
        "f.txt": (None, None),
    }


def test_stdin_json_lines_are_recognised_by_content() -> None:
    inputs = resolve([], io.BytesIO(b'{"a": 1}\n{"a": 2}\n'))
    try:
        assert inputs.sources[0].kind == "jsonl"
    finally:
        inputs.cleanup()


# ----- bounds and bad input -----


def test_inputs_over_the_memory_share_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "x" * 600)
    write(tmp_path / "b.txt", "x" * 600)
    options = InputOptions(memory_bytes=2000, max_memory_share=0.5)
    assert names(resolve([str(tmp_path / "a.txt")], None, options)) == [str(tmp_path / "a.txt")]
    with pytest.raises(UsageError, match="--include") as caught:
        resolve([str(tmp_path)], None, options)
    message = str(caught.value)
    assert "50% of this machine's 2.0 KB of memory" in message
    assert "\n" not in message


def test_a_compressed_input_over_the_memory_share_is_refused_without_reading_it_all(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "big.gz", gzip.compress(b"y" * 10_000_000))
    options = InputOptions(memory_bytes=1_000_000, max_memory_share=0.5)
    with pytest.raises(UsageError, match="narrow them with --include"):
        resolve([str(path)], None, options)


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(UsageError, match="no such file") as caught:
        resolve([str(missing)], None)
    assert str(missing) in str(caught.value)
    assert caught.value.exit_code == 2


def test_empty_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.txt", "")
    with pytest.raises(UsageError, match="empty") as caught:
        resolve([str(empty)], None)
    assert str(empty) in str(caught.value)


def test_a_binary_file_named_on_its_own_is_a_usage_error(tmp_path: Path) -> None:
    blob = write(tmp_path / "blob.bin", b"\x00\x01\x02")
    with pytest.raises(UsageError, match="binary") as caught:
        resolve([str(blob)], None)
    assert str(caught.value).startswith(str(blob))


def test_empty_directory_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(UsageError, match="the directory is empty") as caught:
        resolve([str(empty)], None)
    assert str(empty) in str(caught.value)


def test_directory_of_only_skipped_files_is_a_usage_error(tmp_path: Path) -> None:
    tree = tmp_path / "bin_only"
    write(tree / ".git" / "HEAD", "ref\n")
    write(tree / "blob.bin", b"\x00\x01")
    with pytest.raises(UsageError) as caught:
        resolve([str(tree)], None)
    message = str(caught.value)
    assert message.startswith(str(tree))
    assert "every entry of the directory was skipped (1 version control, 1 binary)" in message
    assert "rlm inspect" in message


def test_directory_of_only_empty_files_is_a_usage_error(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "")
    with pytest.raises(UsageError, match="every file in the directory is empty"):
        resolve([str(tmp_path)], None)


def test_fifo_and_devices_are_usage_errors(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="FIFO") as caught:
        resolve([str(fifo)], None)  # must not open (and block on) the FIFO
    assert str(fifo) in str(caught.value)
    with pytest.raises(UsageError, match="character device"):
        resolve(["/dev/null"], None)


def test_an_error_after_stdin_removes_the_spool_file(tmp_path: Path, private_tempdir: Path) -> None:
    with pytest.raises(UsageError):
        resolve(["-", str(tmp_path / "missing.txt")], io.BytesIO(b"piped"))
    assert list(private_tempdir.iterdir()) == []


def test_no_input_at_all_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        resolve([], None)
    with pytest.raises(UsageError, match="'-'"):
        resolve(["-"], None)


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
    write(tmp_path / "f.txt", "file")
    inputs = resolve([str(tmp_path / "f.txt"), "-"], io.BytesIO(b"\xff\xfeh\x00i\x00"))
    try:
        assert inputs.shape == "dict"
        assert names(inputs) == [str(tmp_path / "f.txt"), STDIN_NAME]
        assert (inputs.sources[1].encoding, inputs.sources[1].bom) == ("utf-16-le", 2)
    finally:
        inputs.cleanup()


def test_compressed_stdin_is_decompressed() -> None:
    inputs = resolve([], io.BytesIO(gzip.compress(b"zipped text\n")))
    try:
        assert inputs.sources[0].compression == "gzip"
        assert inputs.sources[0].size == len(b"zipped text\n")
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
    files = {
        tmp_path / "top.txt": b"top\r\n",
        tree / "a.txt": b"\xef\xbb\xbfbom text",
        tree / "sub" / "b.bin": b"\x00binary",
        tree / "sub" / "c.txt": "ütf-16".encode("utf-16"),
        tree / "d.log.gz": gzip.compress(b"compressed\n"),
        tree / ".gitignore": b"*.tmp\n",
        tree / "e.tmp": b"ignored\n",
    }
    for path, data in files.items():
        write(path, data)
    make_zip(tree / "f.zip", {"x.txt": b"x"})
    make_tar(tree / "g.tar.gz", {"y.txt": b"y"})
    files[tree / "f.zip"] = (tree / "f.zip").read_bytes()
    files[tree / "g.tar.gz"] = (tree / "g.tar.gz").read_bytes()
    for path in files:
        os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = {path: (path.read_bytes(), os.stat(path).st_mtime_ns) for path in files}
    dir_mtimes = {d: os.stat(d).st_mtime_ns for d in (tmp_path, tree, tree / "sub")}
    inputs = resolve([str(tmp_path / "top.txt"), str(tree)], None)
    assert len(inputs.sources) == 7
    inputs.cleanup()
    assert {path: (path.read_bytes(), os.stat(path).st_mtime_ns) for path in files} == before
    assert {d: os.stat(d).st_mtime_ns for d in dir_mtimes} == dir_mtimes  # nothing created
    assert inputs.temp_paths == []

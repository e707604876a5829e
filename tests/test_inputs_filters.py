"""One filter chain: a walked file and the same path inside an archive get the same verdict.

The walk gets parent exclusion by not entering a folder; archive members by `check_below`,
which asks the same `Filters.check` about each folder above them. These tests build one tree,
walk it, pack it as a zip and as a tar, and compare what each of the three loads and skips.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rlm_cli.inputs import InputOptions, Inputs
from rlm_cli.inputs.ignore import Filters, IgnoreRules
from rlm_cli.inputs.resolve import resolve

TREE = {
    ".gitignore": b"build/\n*.log\n",
    ".git/HEAD": b"ref: refs/heads/main\n",
    ".git/objects/ab/cdef": b"blob\n",
    "build/out.py": b"built = 1\n",
    "build/deep/more.py": b"built = 2\n",
    "docs/guide.txt": b"guide\n",
    "docs/api.py": b"api = 1\n",
    "src/a.py": b"a = 1\n",
    "src/b.txt": b"b\n",
    "src/c.log": b"log\n",
    "src/vendor/.hg/store": b"hg\n",
    "src/vendor/lib.py": b"lib = 1\n",
    "src/.env": b"KEY=1\n",
    "notes.md": b"# notes\n",
}


def make_tree(root: Path) -> Path:
    for name, data in TREE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def make_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in TREE.items():
            archive.writestr(name, data)
    return path


def make_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in TREE.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def outcome(inputs: Inputs, prefix: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """(loaded paths, skipped path -> (reason, detail)), with `prefix/` taken off every path, so
    a walk of a folder and a named archive of the same files compare equal."""

    def bare(text: str) -> str:
        return text.replace(f"{prefix}/", "")

    loaded = sorted(bare(source.display or source.name) for source in inputs.sources)
    skipped = {bare(skip.path): (skip.reason, bare(skip.detail)) for skip in inputs.skipped}
    return loaded, skipped


def load(path: Path, **options: Any) -> tuple[list[str], dict[str, tuple[str, str]]]:
    inputs = resolve([str(path)], None, InputOptions(count_tokens=False, **options))
    try:
        return outcome(inputs, str(path))
    finally:
        inputs.cleanup()


@pytest.mark.parametrize("pack", [make_zip, make_tar], ids=["zip", "tar"])
def test_a_folder_and_its_archive_get_the_same_verdicts(tmp_path: Path, pack: Any) -> None:
    tree = make_tree(tmp_path / "tree")
    archive = pack(tmp_path / ("tree.zip" if pack is make_zip else "tree.tar.gz"))
    options = {"exclude": ("docs/",), "include": ("*.py", "*.md", ".gitignore")}
    walked, archived = load(tree, **options), load(archive, **options)
    assert walked == archived
    loaded, skipped = walked
    assert loaded == [".gitignore", "notes.md", "src/a.py", "src/vendor/lib.py"]
    assert skipped == {
        ".git/": ("version control", ""),  # one skip for the folder, none for what is in it
        "build/": ("ignored", ".gitignore:1 build/"),  # an ignored parent folder
        "docs/": ("excluded", "--exclude docs/"),
        "src/.env": ("not included", "matches no --include"),
        "src/b.txt": ("not included", "matches no --include"),
        "src/c.log": ("ignored", ".gitignore:2 *.log"),  # the ignore file wins over --include
        "src/vendor/.hg/": ("version control", ""),
    }


@pytest.mark.parametrize("pack", [make_zip, make_tar], ids=["zip", "tar"])
def test_secret_files_get_the_same_verdict_with_a_hint_of_their_own(
    tmp_path: Path, pack: Any
) -> None:
    tree = make_tree(tmp_path / "tree")
    archive = pack(tmp_path / ("tree.zip" if pack is make_zip else "tree.tar.gz"))
    walked, archived = load(tree), load(archive)
    assert walked[0] == archived[0]
    assert walked[1].keys() == archived[1].keys()
    reasons = {path: reason for path, (reason, _) in walked[1].items()}
    assert reasons == {path: reason for path, (reason, _) in archived[1].items()}
    assert reasons["src/.env"] == "secret"
    # A walked file can be named to load it; a member cannot, so its hint does not offer that.
    assert walked[1]["src/.env"][1] == "a dotenv file; name it, or --include it by name, to load it"
    assert archived[1]["src/.env"][1] == "a dotenv file; --include it by name to load it"


def test_an_archive_in_a_folder_sees_the_globs_through_its_path(tmp_path: Path) -> None:
    """Inside a walk, --exclude and --include see members as `<archive path>/<member>`, and the
    archive's own .gitignore applies below it only."""
    root = tmp_path / "root"
    make_zip((root / "data").mkdir(parents=True) or root / "data" / "bundle.zip")
    (root / "top.log").write_text("a log the archive's .gitignore does not reach\n")
    loaded, skipped = load(root, exclude=("data/bundle.zip/src/vendor/",))
    assert "top.log" in loaded
    assert skipped["data/bundle.zip/src/vendor/"] == (
        "excluded",
        "--exclude data/bundle.zip/src/vendor/",
    )
    assert skipped["data/bundle.zip/src/c.log"] == (
        "ignored",
        "data/bundle.zip/.gitignore:2 *.log",
    )
    assert "data/bundle.zip/src/a.py" in loaded


def test_an_excluded_ignore_file_still_applies_in_zips_and_tars_alike(tmp_path: Path) -> None:
    """A walk reads a folder's ignore files whatever the globs say of the files themselves;
    members do the same, whichever way the archive is read."""
    tree = make_tree(tmp_path / "tree")
    options = {"exclude": (".gitignore",)}
    walked = load(tree, **options)
    zipped = load(make_zip(tmp_path / "t.zip"), **options)
    assert load(make_tar(tmp_path / "t.tar.gz"), **options) == zipped
    assert zipped[0] == walked[0] and "src/c.log" not in walked[0]
    for skipped in (walked[1], zipped[1]):
        assert skipped["build/"] == ("ignored", ".gitignore:1 build/")
        assert skipped[".gitignore"] == ("excluded", "--exclude .gitignore")


def test_check_below_names_the_first_folder_that_fails() -> None:
    filters = Filters(include=(), exclude=("cache/",))
    rules = IgnoreRules()
    rules.add("pack.zip/a", "pack.zip/a/.gitignore", ["tmp/"])
    root = "pack.zip"
    assert filters.check_below(root, "a/tmp/x/y.txt", False, rules) == (
        "a/tmp",
        "ignored",
        "pack.zip/a/.gitignore:1 tmp/",
    )
    assert filters.check_below(root, "a/cache/y.txt", False, rules) == (
        "a/cache",
        "excluded",
        "--exclude cache/",
    )
    assert filters.check_below(root, "a/.git", False, rules) == (None, "version control", "")
    assert filters.check_below(root, "a/ok.txt", False, rules) is None
    # Without the ignore rules (an archive still being listed) only they are left out.
    assert filters.check_below(root, "a/tmp/x/y.txt", False, None) is None
    assert filters.check_below(root, "a/cache/y.txt", False, None) is not None

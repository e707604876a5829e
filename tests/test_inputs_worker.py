"""Inputs loaded by a real worker process (through the Sandbox): the text `context` holds, and the
metadata the root model is told."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import json
import lzma
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rlm_cli.engine.prompts import RunFacts, first_message
from rlm_cli.inputs import Inputs
from rlm_cli.inputs.resolve import resolve
from rlm_cli.sandbox.host import QueryRequest, Sandbox, SandboxError


async def _no_queries(request: QueryRequest) -> list[str]:
    return ["" for _ in request.prompts]


def load(inputs: Inputs, code: str = "print(repr(context))") -> tuple[dict[str, Any], str]:
    """Start a worker on `inputs`; return its metadata and what `code` printed."""

    async def main() -> tuple[dict[str, Any], str]:
        sandbox = Sandbox(inputs, output_limit=100_000, on_query=_no_queries)
        try:
            meta = await sandbox.start()
            result = await sandbox.execute(code, 30)
            assert not result.error, result.output
            return meta, result.output
        finally:
            await sandbox.close()

    try:
        return asyncio.run(main())
    finally:
        inputs.cleanup()


def context_of(*args: str) -> tuple[dict[str, Any], Any]:
    meta, output = load(resolve(list(args), None), "import json; print(json.dumps(context))")
    return meta, json.loads(output)


def test_utf16_with_bom_invalid_utf8_gz_and_zip_load_with_the_right_text(tmp_path: Path) -> None:
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("\ufeffhéllo ✓\r\nsecond\n".encode("utf-16-le"))
    invalid = tmp_path / "invalid.txt"
    invalid.write_bytes(b"caf\xe9 ok \xff\xfe end\n")
    packed = tmp_path / "log.txt.gz"
    packed.write_bytes(gzip.compress(b"from gzip\n"))
    bundle = tmp_path / "three.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("one.txt", "first\n")
        archive.writestr("dir/two.md", "# second\n")
        archive.writestr("dir/three.csv", "a,b\n1,2\n")
    meta, context = context_of(str(utf16), str(invalid), str(packed), str(bundle))
    assert context == {
        str(utf16): "héllo ✓\r\nsecond\n",  # BOM gone, line endings as they were
        str(invalid): "caf\ufffd ok \ufffd\ufffd end\n",
        str(packed): "from gzip\n",
        f"{bundle}/dir/three.csv": "a,b\n1,2\n",
        f"{bundle}/dir/two.md": "# second\n",
        f"{bundle}/one.txt": "first\n",
    }
    assert meta["invalid_bytes"] == {str(invalid): 3}
    assert meta["invalid_bytes_total"] == 3
    assert meta["formats"] == {
        f"{bundle}/dir/three.csv": {"kind": "csv", "preview": "header (2 columns): a,b"}
    }
    assert meta["entries"] == 6


def test_a_single_file_is_a_str_and_keeps_its_bytes_exact(tmp_path: Path) -> None:
    text = "line one\r\nline two\rline three\n\u2028 unicode ✓ \U0001f600\n"
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    meta, context = context_of(str(path))
    assert context == text
    assert meta["type"] == "str"
    assert meta["chars"] == len(text)
    assert meta["estimated_tokens"] > 0
    assert "invalid_bytes" not in meta


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_utf16_and_utf32_with_a_bom(tmp_path: Path, encoding: str) -> None:
    text = "héllo wörld ✓ \U0001f600\nsecond line\n"
    path = tmp_path / "bom.txt"
    path.write_bytes(("\ufeff" + text).encode(encoding))
    _meta, context = context_of(str(path))
    assert context == text


def test_compressed_files_of_each_kind(tmp_path: Path) -> None:
    text = "ünïcode line\n" * 1000
    for suffix, compress in (
        (".gz", gzip.compress),
        (".bz2", bz2.compress),
        (".xz", lzma.compress),
    ):
        (tmp_path / f"t{suffix}").write_bytes(compress(b"\xef\xbb\xbf" + text.encode()))
    _meta, context = context_of(*(str(tmp_path / f"t{s}") for s in (".gz", ".bz2", ".xz")))
    assert list(context.values()) == [text, text, text]


def test_tar_members_load_in_name_order_from_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.xz"
    members = {"./z.txt": "last\n", "./a/b.txt": "\ufeffbom member\n", "./bin.dat": "\x00\x01"}
    with tarfile.open(path, "w:xz") as archive:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    meta, context = context_of(str(path))
    assert list(context.items()) == [
        (f"{path}/a/b.txt", "bom member\n"),
        (f"{path}/z.txt", "last\n"),
    ]
    assert [name for name, _size in meta["files"]] == list(context)


FACTS = RunFacts(100_000, "worker", 20_000, 30, 120, recursive=False, max_depth=1)


def test_directory_with_archives_and_formats_in_the_first_message(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "events.jsonl").write_text('{"id": 1, "kind": "start"}\n{"id": 2}\n')
    (tree / "table.tsv").write_text("name\tcount\nx\t1\n")
    meta, _output = load(resolve([str(tree)], None), "pass")
    message = first_message("how many?", meta, FACTS)
    assert (
        "- events.jsonl (37 chars; 2 lines; JSON Lines (one JSON value per line); first record: "
        '{"id": 1, "kind": "start"})'
    ) in message
    assert (
        "- table.tsv (15 chars; 2 lines; TSV (tab-separated); header (2 columns): name\tcount)"
        in message
    )


def test_single_csv_and_invalid_bytes_in_the_first_message(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,name\n1,caf\xe9\n")
    meta, _output = load(resolve([str(path)], None), "pass")
    message = first_message("q", meta, FACTS)
    assert "The text is CSV (comma-separated); header (2 columns): id,name." in message
    assert "1 invalid byte(s) were replaced with U+FFFD while decoding." in message


def test_a_source_that_vanished_fails_with_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "gone.txt"
    path.write_text("here for now")
    inputs = resolve([str(path)], None)
    path.unlink()
    with pytest.raises(SandboxError) as caught:
        load(inputs)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message

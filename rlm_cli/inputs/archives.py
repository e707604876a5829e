"""Compressed files and archives on the host: open their text as a stream, list members safely.

Nothing is ever extracted to disk, so a member named `../../etc/passwd` could not write anywhere;
such names are refused all the same, because they are not paths inside the archive and would make
misleading keys in the context.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import posixpath
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, BinaryIO

from rlm_cli.inputs.model import Compression, Source

# What a corrupt or truncated compressed stream raises, across the three codecs and archives.
DECOMPRESS_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    zlib.error,
    lzma.LZMAError,
    gzip.BadGzipFile,
    zipfile.BadZipFile,
    tarfile.TarError,
    ValueError,
)


def open_compressed(path: str, kind: Compression) -> tuple[BinaryIO, io.BufferedIOBase]:
    """(raw file, decompressed stream): close both."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller, with the stream
    try:
        stream: io.BufferedIOBase
        if kind == "gzip":
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        elif kind == "bz2":
            stream = bz2.BZ2File(raw, "rb")
        else:
            stream = lzma.LZMAFile(raw, "rb")  # noqa: SIM115
    except BaseException:
        raw.close()
        raise
    return raw, stream


@contextmanager
def open_source(source: Source) -> Iterator[BinaryIO]:
    """The bytes the worker will decode, as a stream (for reading on the host, in chunks)."""
    if source.archive == "zip":
        assert source.member is not None
        with zipfile.ZipFile(source.path) as zipped, zipped.open(source.member) as member:
            yield member  # type: ignore[misc]
    elif source.archive == "tar":
        with tarfile.open(source.path, mode="r|*") as tarred:
            for info in tarred:
                if info.name == source.member:
                    data = tarred.extractfile(info)
                    if data is None:
                        break
                    yield data  # type: ignore[misc]
                    return
            raise FileNotFoundError(f"{source.path}: no member {source.member!r}")
    elif source.compression is not None:
        raw, stream = open_compressed(source.path, source.compression)
        with raw, stream:
            yield stream  # type: ignore[misc]
    else:
        with open(source.path, "rb") as handle:
            yield handle


def read_all(source: Source) -> bytes:
    with open_source(source) as stream:
        return stream.read()


def read_at(source: Source, offset: int, size: int) -> bytes:
    with open(source.path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


@dataclass(frozen=True)
class Member:
    """One entry of an archive, before any filter but its own kind has been applied."""

    name: str  # a clean relative path: what the user sees after `archive.zip/`
    stored: str  # the name as stored, which the worker looks up
    size: int
    kind: str  # file, dir, link, special, unsafe, encrypted, duplicate


def safe_member_name(name: str) -> str | None:
    """The member's path inside the archive, or None when it would point outside it."""
    name = name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        return None
    return posixpath.join(*parts)


def list_zip(path: str) -> list[Member]:
    members = []
    seen: set[str] = set()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            clean = safe_member_name(info.filename)
            mode = info.external_attr >> 16
            if info.is_dir():
                kind = "dir"
            elif clean is None:
                kind = "unsafe"
            elif stat.S_ISLNK(mode):
                kind = "link"
            elif info.flag_bits & 0x1:
                kind = "encrypted"
            elif clean in seen:
                kind = "duplicate"
            else:
                kind = "file"
                seen.add(clean)
            members.append(Member(clean or info.filename, info.filename, info.file_size, kind))
    return members


def iter_tar(path: str) -> Iterator[tuple[Member, IO[bytes] | None]]:
    """Members in archive order, each with its data stream (valid until the next member).

    Streaming mode reads a compressed tar once from start to end; random access would restart
    decompression for every backwards seek.
    """
    seen: set[str] = set()
    with tarfile.open(path, mode="r|*") as archive:
        for info in archive:
            clean = safe_member_name(info.name)
            if info.isdir():
                kind = "dir"
            elif clean is None:
                kind = "unsafe"
            elif info.issym() or info.islnk():
                kind = "link"
            elif not info.isfile():
                kind = "special"
            elif clean in seen:
                kind = "duplicate"
            else:
                kind = "file"
                seen.add(clean)
            stream = archive.extractfile(info) if kind == "file" else None
            yield Member(clean or info.name, info.name, info.size, kind), stream

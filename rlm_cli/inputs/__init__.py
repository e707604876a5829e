"""Inputs: turn paths, directories and stdin into Sources the worker can load by itself.

The host only stats and sniffs files here; it never reads an input whole (the worker does, once).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from rlm_cli.errors import UsageError

STDIN_NAME = "<stdin>"
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", "__pycache__"})
SNIFF_BYTES = 8192
SPOOL_CHUNK = 1 << 20
# About four characters of English or code per token for GPT-style tokenizers: good enough for
# metadata and sizing; exact counts come from a real tokenizer where it matters.
CHARS_PER_TOKEN = 4.0

Shape = Literal["single", "dict"]


@dataclass(frozen=True)
class Source:
    """One loadable text: `name` is its key in a dict context, `path` what the worker opens."""

    name: str
    path: str
    size: int
    encoding: str = "utf-8"
    format: Literal["text", "json"] = "text"

    def wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "encoding": self.encoding,
            "format": self.format,
        }


@dataclass
class Inputs:
    """What a run reads: its sources, whether `context` is one value or a dict, and temp files."""

    sources: list[Source]
    shape: Shape
    skipped: list[tuple[str, str]] = field(default_factory=list)
    temp_paths: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(source.size for source in self.sources)

    def summary(self) -> dict[str, Any]:
        return {
            "files": len(self.sources),
            "bytes": self.total_bytes,
            "estimated_tokens": estimate_tokens(self.total_bytes),
            "shape": self.shape,
            "names": [source.name for source in self.sources[:50]],
            "skipped": len(self.skipped),
        }

    def cleanup(self) -> None:
        for path in self.temp_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.temp_paths.clear()


def estimate_tokens(chars: int) -> int:
    return round(chars / CHARS_PER_TOKEN)


def resolve(args: list[str], stdin: BinaryIO | None) -> Inputs:
    """Resolve command-line inputs. `-` (or no args with `stdin` given) reads stdin."""
    if not args:
        if stdin is None:
            raise UsageError(
                "no input: give files or directories before the question, or pipe text in"
            )
        args = ["-"]
    inputs = Inputs(sources=[], shape="single")
    directories = 0
    try:
        for arg in args:
            if arg == "-":
                if stdin is None:
                    raise UsageError("'-' reads standard input, but nothing is piped in")
                inputs.sources.append(_spool_stdin(stdin, inputs.temp_paths))
            elif os.path.isdir(arg):
                directories += 1
                _walk(arg, inputs)
            else:
                inputs.sources.append(_file_source(arg, arg))
        _check_unique_names(inputs.sources)
    except BaseException:
        inputs.cleanup()
        raise
    if len(inputs.sources) != 1 or directories:
        inputs.shape = "dict"
    return inputs


def from_value(value: Any) -> Inputs:
    """Inputs for a Python value (the library API, child runs): written to a private temp file."""
    fd, path = tempfile.mkstemp(
        prefix="rlm-context-", suffix=".txt" if isinstance(value, str) else ".json"
    )
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        if isinstance(value, str):
            handle.write(value)
        else:
            json.dump(value, handle, ensure_ascii=False)
    source = Source(
        name="context",
        path=path,
        size=os.path.getsize(path),
        format="text" if isinstance(value, str) else "json",
    )
    return Inputs(sources=[source], shape="single", temp_paths=[path])


def _file_source(arg: str, name: str) -> Source:
    try:
        info = os.stat(arg)
    except FileNotFoundError:
        raise UsageError(f"{arg}: no such file or directory; check the path") from None
    except PermissionError:
        raise UsageError(f"{arg}: permission denied; check the file's permissions") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{arg}: not a regular file or directory; give a file, a directory or '-'")
    if info.st_size == 0:
        raise UsageError(f"{arg}: the file is empty; there is nothing to ask about")
    try:
        with open(arg, "rb") as handle:
            head = handle.read(4)
    except PermissionError:
        raise UsageError(f"{arg}: permission denied; check the file's permissions") from None
    return Source(
        name=name, path=os.path.abspath(arg), size=info.st_size, encoding=_sniff_encoding(head)
    )


def _sniff_encoding(head: bytes) -> str:
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return "utf-8"


def _is_binary(path: str) -> bool:
    with open(path, "rb") as handle:
        return b"\x00" in handle.read(SNIFF_BYTES)


def _walk(directory: str, inputs: Inputs) -> None:
    """Every text file below `directory`, named relative to it, sorted by that name."""
    found: list[tuple[str, str]] = []
    for root, dirs, files in os.walk(directory):
        for skipped in sorted(d for d in dirs if d in SKIPPED_DIRS):
            inputs.skipped.append((os.path.join(root, skipped), "version-control or cache folder"))
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        for filename in files:
            path = os.path.join(root, filename)
            found.append((os.path.relpath(path, directory).replace(os.sep, "/"), path))
    loaded = 0
    for name, path in sorted(found):
        try:
            if not os.path.isfile(path) or os.path.getsize(path) == 0:
                inputs.skipped.append((path, "empty or not a regular file"))
                continue
            if _is_binary(path):
                inputs.skipped.append((path, "binary"))
                continue
        except OSError as exc:
            inputs.skipped.append((path, exc.strerror or "unreadable"))
            continue
        inputs.sources.append(_file_source(path, name))
        loaded += 1
    if not loaded:
        raise UsageError(f"{directory}: the directory has no readable text files")


def _check_unique_names(sources: list[Source]) -> None:
    """Files from two directories may share a relative name; the dict needs distinct keys."""
    seen: dict[str, int] = {}
    for index, source in enumerate(sources):
        if source.name in seen:
            raise UsageError(
                f"{source.path}: two inputs would both be named {source.name!r} in the context; "
                "give the directories' parent instead"
            )
        seen[source.name] = index


def _spool_stdin(stdin: BinaryIO, temp_paths: list[str]) -> Source:
    # mkstemp creates the file readable by this user only.
    fd, path = tempfile.mkstemp(prefix="rlm-stdin-", suffix=".txt")
    temp_paths.append(path)
    size = 0
    head = b""
    with os.fdopen(fd, "wb") as spool:
        while chunk := stdin.read(SPOOL_CHUNK):
            if not head:
                head = chunk[:4]
            spool.write(chunk)
            size += len(chunk)
    if size == 0:
        raise UsageError("standard input is empty; pipe some text in or give files")
    return Source(name=STDIN_NAME, path=path, size=size, encoding=_sniff_encoding(head))

"""Reading the sources into `context`, and what the root model is told about it.

Standard library only; the host's rlm_cli.inputs decided what to read and how (`SourceWire`).
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.util
import json
import os
import platform
from collections.abc import Iterator
from typing import Any


def describe(
    context: Any,
    sources: list[dict[str, Any]] | None = None,
    invalid: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What the root model may know about `context`: its shape and sizes, and for a str its
    first and last lines (cut short; the host makes them safe to show), never the rest.

    From the sources: the input's name, the format of structured files (csv, tsv, json, jsonl)
    with their header or first record, the host's token estimate, and how many invalid bytes
    were replaced. And the Python the cells run on, with the data modules it has.
    """
    sources = sources or []
    meta: dict[str, Any] = {"type": type(context).__name__}
    if isinstance(context, str):
        meta.update(describe_text(context))
        if len(sources) == 1:
            meta["name"] = str(sources[0]["name"])
    elif isinstance(context, dict):
        sizes = [
            (str(k), len(v) if isinstance(v, str) else len(json.dumps(v)))
            for k, v in context.items()
        ]
        meta["chars"] = sum(size for _, size in sizes)
        meta["entries"] = len(sizes)
        meta["files"] = sizes[:FILES_LISTED]
        # Aligned with `files` (None for a value that is not text); a list of its own, so that
        # `files` keeps its (name, size) pairs.
        meta["file_lines"] = [
            line_count(value) if isinstance(value, str) else None
            for value in list(context.values())[:FILES_LISTED]
        ]
        root = _root(sources)
        if root:
            meta["root"] = root
    else:
        meta["chars"] = len(json.dumps(context, ensure_ascii=False))
        if isinstance(context, list):
            meta["entries"] = len(context)
    formats = {
        source["name"]: {"kind": source["kind"], "preview": source.get("preview") or ""}
        for source in sources
        if source.get("kind")
    }
    if formats:
        meta["formats"] = dict(list(formats.items())[:FORMATS_SHOWN])
    if invalid:
        meta["invalid_bytes"] = dict(list(invalid.items())[:FORMATS_SHOWN])
        meta["invalid_bytes_total"] = sum(invalid.values())
    if sources and all(source.get("tokens") is not None for source in sources):
        meta["estimated_tokens"] = sum(int(source["tokens"]) for source in sources)
    meta["python"] = platform.python_version()
    meta["modules"] = [name for name in DATA_MODULES if _installed(name)]
    return meta


FILES_LISTED = 1000
HEAD_LINES, TAIL_LINES = 5, 2
LINE_CHARS = 200  # of each line shown; the host cuts again (the worker is not trusted)
# Modules beyond the standard library that a cell might reach for, told to the root when the
# worker's Python has them (by default it has none of them: rlm does not install them).
DATA_MODULES = ("numpy", "pandas", "scipy", "regex", "bs4", "lxml", "networkx", "sklearn")
# Where str.splitlines() ends a line ("\r\n" counts once): the line count the root is told is
# len(text.splitlines()), counted without building the list.
LINE_ENDS = ("\n", "\r", "\v", "\f", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def line_count(text: str) -> int:
    """len(text.splitlines()), in a few passes of str.count and no list of lines."""
    ends = sum(text.count(end) for end in LINE_ENDS) - text.count("\r\n")
    return ends + (1 if text and text[-1] not in LINE_ENDS else 0)


def describe_text(text: str) -> dict[str, Any]:
    """A str's size, line count, last character, and its first and last lines."""
    total = line_count(text)
    meta: dict[str, Any] = {
        "chars": len(text),
        "lines": total,
        "ends_with_newline": bool(text) and text[-1] in LINE_ENDS,
    }
    # grep and lines() count lines at "\n" only: where that differs (a lone "\r", a form feed,
    # U+2028...), the root is told both.
    at_newline = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    if at_newline != total:
        meta["lines_at_newline"] = at_newline
    if total <= HEAD_LINES + TAIL_LINES:
        meta["head"] = [_sample(line) for line in _first_lines(text, total)]
        meta["tail"] = []
    else:
        meta["head"] = [_sample(line) for line in _first_lines(text, HEAD_LINES)]
        meta["tail"] = [_sample(line) for line in _last_lines(text, TAIL_LINES)]
    return meta


def _sample(line: str) -> list[Any]:
    """A line as sent to the host: its first LINE_CHARS characters and its whole length."""
    return [line[:LINE_CHARS], len(line)]


def _first_lines(text: str, count: int) -> list[str]:
    """The first `count` lines, from a window of the text grown until it holds them (a line
    may be very long: a one-line JSON file)."""
    window = 4096
    while True:
        pieces = text[:window].splitlines()
        if window >= len(text) or len(pieces) > count:
            return pieces[:count]
        window *= 8


def _last_lines(text: str, count: int) -> list[str]:
    window = 4096
    while True:
        pieces = text[-window:].splitlines()
        if window >= len(text) or len(pieces) > count:
            return pieces[-count:]
        window *= 8


def _root(sources: list[dict[str, Any]]) -> str:
    """The folder the files' names are relative to (the directory given), by its own name;
    "" when they do not share one (several files or archives named one by one)."""
    roots = set()
    for source in sources:
        path, name = str(source.get("path", "")), str(source["name"])
        if source.get("archive") or not path.endswith("/" + name):
            return ""
        roots.add(path[: -len(name) - 1])
    return os.path.basename(roots.pop()) if len(roots) == 1 else ""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


FORMATS_SHOWN = 100
_REPLACED = "rlm-worker-count-invalid"  # a name of its own, beside the codecs' built-in ones
_replaced = [0]


def _count_replaced(exc: UnicodeError) -> tuple[str, int]:
    """errors="replace" that also counts the bytes it replaced. Only called at invalid bytes: the
    decoders' fast paths for valid text are unaffected."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _replaced[0] += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error(_REPLACED, _count_replaced)


def load_sources(sources: list[dict[str, Any]]) -> tuple[list[Any], dict[str, int]]:
    """Each source's value, in order, and the invalid bytes replaced in each (where any were).

    Memory: one file's bytes and its text exist together only while it is decoded, and the
    bytes are freed at once, so loading peaks near 2x the largest file (for ASCII text) plus
    the texts already loaded. Archives are opened once each; a tar is read in one pass.
    """
    values: list[Any] = [None] * len(sources)
    invalid: dict[str, int] = {}
    by_archive: dict[tuple[str, str], list[int]] = {}
    for index, source in enumerate(sources):
        if source.get("archive"):
            by_archive.setdefault((source["archive"], source["path"]), []).append(index)
            continue
        with _naming(source["path"]):
            values[index] = _load_file(source, invalid)
    for (kind, path), indexes in by_archive.items():
        with _naming(path):
            loaded = _load_archive(kind, path, [sources[i] for i in indexes], invalid)
        for index, value in zip(indexes, loaded, strict=True):
            values[index] = value
    return values, invalid


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """Turn whatever reading a source raises into one line naming it (sent as `init_error`)."""
    try:
        yield
    except MemoryError:
        raise ValueError(
            f"{path}: not enough memory to load it; narrow the inputs with --include/--exclude"
        ) from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError, EOFError...
        raise ValueError(f"{path}: cannot load it ({type(exc).__name__}: {exc})") from None


def _load_file(source: dict[str, Any], invalid: dict[str, int]) -> Any:
    path = source["path"]
    if source.get("format") == "json":
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    compression = source.get("compression")
    if compression:
        with _open_compressed(path, compression) as stream:
            data = stream.read()
        return _decode(data, source, invalid)
    # Unbuffered, past the BOM, in one read: FileIO sizes its buffer from fstat, so the bytes
    # are allocated once and never copied; decoding them is the only other pass.
    with open(path, "rb", buffering=0) as handle:
        if source.get("bom"):
            handle.seek(int(source["bom"]))
        data = handle.read()
    return _decode(data, {**source, "bom": 0}, invalid)


def _open_compressed(path: str, kind: str) -> Any:
    if kind == "gzip":
        import gzip

        return gzip.open(path, "rb")
    if kind == "bz2":
        import bz2

        return bz2.open(path, "rb")
    if kind == "xz":
        import lzma

        return lzma.open(path, "rb")
    raise ValueError(f"unknown compression {kind!r}")


def _load_archive(
    kind: str, path: str, members: list[dict[str, Any]], invalid: dict[str, int]
) -> list[str]:
    if kind == "zip":
        import zipfile

        with zipfile.ZipFile(path) as archive:
            return [_decode(archive.read(m["member"]), m, invalid) for m in members]
    if kind != "tar":
        raise ValueError(f"unknown archive kind {kind!r}")
    import tarfile

    wanted = {m["member"]: m for m in members}
    texts: dict[str, str] = {}
    # One streaming pass, in archive order: a compressed tar cannot seek backwards cheaply.
    with tarfile.open(path, mode="r|*") as archive:
        for info in archive:
            member = wanted.get(info.name)
            if member is None or info.name in texts or not info.isfile():
                continue
            stream = archive.extractfile(info)
            if stream is not None:
                texts[info.name] = _decode(stream.read(), member, invalid)
            if len(texts) == len(wanted):
                break
    missing = [name for name in wanted if name not in texts]
    if missing:
        raise ValueError(f"no member {missing[0]!r} in the archive")
    return [texts[m["member"]] for m in members]


def _decode(data: bytes, source: dict[str, Any], invalid: dict[str, int]) -> str:
    encoding = source.get("encoding", "utf-8")
    bom = int(source.get("bom") or 0)
    _replaced[0] = 0
    if bom:
        text = str(memoryview(data)[bom:], encoding, _REPLACED)  # no copy of the bytes
    else:
        text = data.decode(encoding, _REPLACED)
    if _replaced[0]:
        invalid[source["name"]] = _replaced[0]
    return text

"""Reading the sources into `context`, and what the root model is told about it.

Standard library only; the host's rlm_cli.inputs decided what to read and how (`SourceWire`).
"""

from __future__ import annotations

import codecs
import contextlib
import json
from collections.abc import Iterator
from typing import Any


def describe(
    context: Any,
    sources: list[dict[str, Any]] | None = None,
    invalid: dict[str, int] | None = None,
) -> dict[str, Any]:
    """What the root model may know about `context`: its shape and sizes, never its content.

    From the sources: the format of structured files (csv, tsv, json, jsonl) with their header or
    first record, the host's token estimate, and how many invalid bytes were replaced.
    """
    meta: dict[str, Any] = {"type": type(context).__name__}
    if isinstance(context, str):
        meta["chars"] = len(context)
        meta["lines"] = context.count("\n") + (0 if context.endswith("\n") or not context else 1)
    elif isinstance(context, dict):
        sizes = [
            (str(k), len(v) if isinstance(v, str) else len(json.dumps(v)))
            for k, v in context.items()
        ]
        meta["chars"] = sum(size for _, size in sizes)
        meta["entries"] = len(sizes)
        meta["files"] = sizes[:1000]
    else:
        meta["chars"] = len(json.dumps(context, ensure_ascii=False))
        if isinstance(context, list):
            meta["entries"] = len(context)
    sources = sources or []
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
    return meta


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

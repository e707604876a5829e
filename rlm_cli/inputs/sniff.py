"""Looking at the first bytes of a file: its encoding, whether it is text, how it is packed, and
what structure (CSV, JSON, ...) the root model should be told about."""

from __future__ import annotations

import codecs
import csv
import json
from dataclasses import dataclass

from rlm_cli.inputs.model import ArchiveKind, Compression

# Git calls a file binary when its first 8000 bytes hold a NUL; we look at a little more.
SNIFF_BYTES = 8192
PREVIEW_CHARS = 300

_BOMS: tuple[tuple[bytes, str], ...] = (
    # UTF-32 first: its little-endian BOM starts with UTF-16's.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

_COMPRESSION_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
)
COMPRESSION_SUFFIXES: dict[str, Compression] = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz"}
# Archives are recognised by name only: .docx, .jar and .xlsx are zips too, and are not text.
ARCHIVE_SUFFIXES: dict[str, ArchiveKind] = {
    ".zip": "zip",
    ".tar": "tar",
    ".tgz": "tar",
    ".tar.gz": "tar",
    ".tbz2": "tar",
    ".tar.bz2": "tar",
    ".txz": "tar",
    ".tar.xz": "tar",
}
STRUCTURED_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


@dataclass(frozen=True)
class TextEncoding:
    encoding: str
    bom: int

    @property
    def unit(self) -> int:
        """Bytes per code unit: offsets into the text must be multiples of this past the BOM."""
        return 4 if "32" in self.encoding else 2 if "16" in self.encoding else 1


def sniff_text(head: bytes) -> TextEncoding | None:
    """The encoding of a file starting with `head`, or None for binary data.

    A BOM names the encoding (UTF-8, UTF-16 or UTF-32). Without one the text is taken as UTF-8,
    and a NUL byte marks the file as binary, as git does.
    """
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return TextEncoding(encoding, len(bom))
    if b"\x00" in head:
        return None
    return TextEncoding("utf-8", 0)


def compression_of(head: bytes) -> Compression | None:
    for magic, kind in _COMPRESSION_MAGIC:
        if head.startswith(magic):
            return kind
    return None


def archive_of(name: str) -> ArchiveKind | None:
    lower = name.lower()
    for suffix, kind in ARCHIVE_SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return None


def strip_compression_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def structure_of(name: str, head_text: str, *, by_content: bool = False) -> tuple[str, str] | None:
    """(kind, preview) for CSV, TSV, JSON and JSON Lines text, else None.

    The kind comes from the file name; `by_content` (for stdin, which has none) also recognises
    JSON and JSON Lines by their first characters. The preview is the header line or first record.
    """
    lower = strip_compression_suffix(name).lower()
    kind = next((k for suffix, k in STRUCTURED_SUFFIXES.items() if lower.endswith(suffix)), None)
    if kind is None and by_content:
        kind = _json_kind(head_text)
    if kind is None:
        return None
    if kind in ("csv", "tsv"):
        return kind, _table_preview(head_text, "\t" if kind == "tsv" else ",")
    if kind == "jsonl":
        first = next((line for line in head_text.splitlines() if line.strip()), "")
        return kind, "first record: " + _clip(first.strip())
    return kind, _json_preview(head_text)


def _json_kind(text: str) -> str | None:
    stripped = text.lstrip()
    if not stripped.startswith(("{", "[")):
        return None
    lines = [line for line in stripped.splitlines()[:3] if line.strip()]
    if len(lines) >= 2 and all(_is_json(line) for line in lines[:2]):
        return "jsonl"
    return "json"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _table_preview(text: str, delimiter: str) -> str:
    header = text.splitlines()[0] if text else ""
    try:
        columns = next(csv.reader([header], delimiter=delimiter))
    except (csv.Error, StopIteration):
        return "header: " + _clip(header)
    return f"header ({len(columns)} columns): {_clip(header)}"


def _json_preview(text: str) -> str:
    """The first element of a top-level array when it is complete in `text`, else the start."""
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            first, _end = json.JSONDecoder().raw_decode(stripped[1:].lstrip())
        except ValueError:
            pass
        else:
            element = _clip(json.dumps(first, ensure_ascii=False))
            return "a top-level array; first element: " + element
        return "a top-level array starting: " + _clip(" ".join(stripped.split()))
    if stripped.startswith("{"):
        return "a top-level object starting: " + _clip(" ".join(stripped.split()))
    return "starts: " + _clip(" ".join(stripped.split()))


def _clip(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"

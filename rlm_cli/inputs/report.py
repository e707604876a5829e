"""Inputs for people: the one-line summary `rlm ask` prints and `rlm inspect`'s rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlm_cli.format import format_bytes, format_tokens
from rlm_cli.inputs.model import Inputs, Skip, Source


def one_line(inputs: Inputs, cost: str | None = None) -> str:
    """`inputs: 12 files · 3.4 MB · ~850K tokens · skipped 5 (3 ignored, 2 binary) · $…`"""
    parts = [
        f"{len(inputs.sources):,} file(s)" if inputs.shape == "dict" else "1 file",
        format_bytes(inputs.total_bytes),
        f"~{format_tokens(inputs.total_tokens)} tokens ({inputs.tokens_method})",
    ]
    if inputs.skipped:
        counts = ", ".join(f"{n} {reason}" for reason, n in inputs.skip_counts().items())
        parts.append(f"skipped {len(inputs.skipped):,} ({counts})")
    if inputs.invalid_bytes:
        files = sum(1 for source in inputs.sources if source.invalid_bytes)
        parts.append(
            f"{inputs.invalid_bytes:,} invalid byte(s) in {files} file(s) replaced with U+FFFD"
        )
    named = [source.display or source.name for source in inputs.sources if source.warning]
    if named:
        parts.append(f"{len(named)} named file(s) look like secrets ({', '.join(named[:3])})")
    if cost:
        parts.append(cost)
    return "inputs: " + " · ".join(parts)


@dataclass(frozen=True)
class Row:
    path: str
    size: int | None
    tokens: int | None
    encoding: str
    status: str  # "loaded", or the reason it was skipped
    warning: str | None = None  # a loaded file that looks like a secret (it was named)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "tokens": self.tokens,
            "encoding": self.encoding,
            "status": self.status,
            "warning": self.warning,
        }


def rows(inputs: Inputs) -> list[Row]:
    """Loaded sources in context order, then skips in the order they were found."""
    loaded = [_source_row(source) for source in inputs.sources]
    return [_printable(row) for row in loaded + [_skip_row(skip) for skip in inputs.skipped]]


def _printable(row: Row) -> Row:
    """A file name that is not UTF-8 (a str with surrogate escapes) shows its bad bytes as
    U+FFFD: stdout and JSON need valid UTF-8."""
    path = row.path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    status = row.status.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return Row(path, row.size, row.tokens, row.encoding, status, row.warning)


def _source_row(source: Source) -> Row:
    notes = [source.encoding_label]
    if source.kind:
        notes.append(source.kind)
    if source.invalid_bytes:
        notes.append(f"{source.invalid_bytes:,} invalid byte(s) replaced")
    path = source.display or source.name
    return Row(path, source.size, source.tokens, ", ".join(notes), "loaded", source.warning or None)


def _skip_row(skip: Skip) -> Row:
    return Row(skip.path, None, None, "", "skipped: " + skip.describe())

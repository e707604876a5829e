"""The data of inputs: Sources the worker loads, Skips the user is told about, and the options."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from rlm_cli.config import DEFAULTS

STDIN_NAME = "<stdin>"
# About four characters of English or code per token: the fallback when no tokenizer is at hand,
# and what the root model is told for values (the library API) that were never counted. The one
# definition: the catalog's window in characters and the scripted provider's usage use it too.
# An int, so `chars // CHARS_PER_TOKEN` stays an int.
CHARS_PER_TOKEN = 4
# The defaults of the settings these are (declared once, in rlm_cli.config).
DEFAULT_MAX_FILE_BYTES: int = DEFAULTS["max_file_size"]
DEFAULT_MAX_MEMORY_SHARE: float = DEFAULTS["max_memory_share"]

Shape = Literal["single", "dict"]
Compression = Literal["gzip", "bz2", "xz"]
ArchiveKind = Literal["zip", "tar"]


@dataclass(frozen=True)
class Source:
    """One loadable text: `name` is its key in a dict context, `path` the file the worker opens.

    `size` counts the bytes the worker decodes (after decompression, BOM included). The worker
    skips `bom` bytes and decodes the rest with `encoding`, a plain codec name (never one that
    handles a BOM itself: utf-8-sig would copy the whole input to drop three bytes).
    """

    name: str
    path: str
    size: int
    encoding: str = "utf-8"
    format: Literal["text", "json"] = "text"
    bom: int = 0
    compression: Compression | None = None
    archive: ArchiveKind | None = None
    member: str | None = None
    # Structured text (csv, tsv, json, jsonl) and its header or first record, for the root model.
    kind: str | None = None
    preview: str | None = None
    # Invalid bytes the worker will replace with U+FFFD (counted by a streaming scan on the host).
    invalid_bytes: int = 0
    tokens: int | None = None
    # Host-only: the path as the user would write it (the argument, joined with the path inside
    # a directory or archive), for summaries; `name` is the key in the context.
    display: str = field(default="", compare=False)
    # Host-only: text samples for the token estimate of sources that cannot seek cheaply
    # (compressed files, archive members). Never sent to the worker.
    samples: tuple[bytes, ...] = field(default=(), repr=False, compare=False)
    # Host-only: why loading this file deserves a word to the user (a named file that looks like
    # a secret, see secret_files.py); shown by summaries and `rlm inspect`, never sent.
    warning: str = field(default="", compare=False)

    def wire(self) -> dict[str, Any]:
        """What the worker needs to load this source (the `init` frame's `sources` entries)."""
        data: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "encoding": self.encoding,
            "format": self.format,
        }
        optional = {
            "bom": self.bom or None,
            "compression": self.compression,
            "archive": self.archive,
            "member": self.member,
            "kind": self.kind,
            "preview": self.preview,
            "tokens": self.tokens,
        }
        data.update({key: value for key, value in optional.items() if value is not None})
        return data

    @property
    def encoding_label(self) -> str:
        """How the text is stored, for people: `utf-16-le, gzip`, `utf-8 (BOM)`, `json value`."""
        if self.format == "json":
            return "json value"
        label = self.encoding + (" (BOM)" if self.bom else "")
        return f"{label}, {self.compression}" if self.compression else label


# Short reasons, used to group skips in summaries; each Skip also has a detail for people.
REASONS = (
    "version control",
    "ignored",
    "excluded",
    "not included",
    "binary",
    "too large",
    "empty",
    "not a regular file",
    "unreadable",
    "symlink loop",
    "unsafe path",
    "nested archive",
    "link in archive",
    "encrypted",
    "corrupt",
    "duplicate name",
    "secret",  # a well-known credentials file (secret_files.py); named files load with a warning
)


@dataclass(frozen=True)
class Skip:
    """A file or folder that was not loaded, and why. Nothing is dropped silently."""

    path: str
    reason: str
    detail: str = ""
    folder: bool = False

    def describe(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True)
class InputOptions:
    """How inputs are filtered and bounded; built from settings and flags."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_memory_share: float = DEFAULT_MAX_MEMORY_SHARE
    count_tokens: bool = True
    # Total memory in bytes, for tests and benchmarks; None reads the machine's (and cgroup's).
    memory_bytes: int | None = None
    # Called with each warning as it is found (the CLI prints it on stderr); they are also kept
    # on the Sources, for summaries.
    warn: Callable[[str], None] | None = field(default=None, compare=False)


@dataclass
class Inputs:
    """What a run reads: its sources, whether `context` is one value or a dict, and temp files."""

    sources: list[Source]
    shape: Shape
    skipped: list[Skip] = field(default_factory=list)
    temp_paths: list[str] = field(default_factory=list)
    # "exact" (every token counted), "sampled", or "approximate" (characters / 4, no tokenizer).
    tokens_method: str = "approximate"

    @property
    def total_bytes(self) -> int:
        return sum(source.size for source in self.sources)

    @property
    def total_tokens(self) -> int:
        return sum(
            source.tokens if source.tokens is not None else estimate_tokens(source.size)
            for source in self.sources
        )

    @property
    def invalid_bytes(self) -> int:
        return sum(source.invalid_bytes for source in self.sources)

    @property
    def warnings(self) -> list[str]:
        """One line per loaded source with a warning: `path: why`."""
        return [f"{s.display or s.name}: {s.warning}" for s in self.sources if s.warning]

    def skip_counts(self) -> dict[str, int]:
        """Skips by reason, most common first; folders count once each, not by their files."""
        return dict(Counter(skip.reason for skip in self.skipped).most_common())

    def summary(self) -> dict[str, Any]:
        """The inputs as recorded in the trace header and the `run_started` event."""
        return {
            "files": len(self.sources),
            "bytes": self.total_bytes,
            "estimated_tokens": self.total_tokens,
            "tokens_method": self.tokens_method,
            "shape": self.shape,
            "names": [source.name for source in self.sources[:50]],
            "skipped": len(self.skipped),
            "skipped_reasons": self.skip_counts(),
            "invalid_bytes": self.invalid_bytes,
            "warnings": self.warnings,
        }

    def cleanup(self) -> None:
        for path in self.temp_paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self.temp_paths.clear()


def estimate_tokens(chars: int) -> int:
    return round(chars / CHARS_PER_TOKEN)

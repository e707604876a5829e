"""Command-line inputs -> Sources: files, directories, archives and stdin, filtered and bounded.

The host reads each input in fixed-size chunks (to sniff it, count its invalid bytes, measure
what a compressed file holds, sample it for tokens) and never holds one whole: the worker is the
only process that does, once. This module dispatches the arguments, loads plain and compressed
files, and keeps the memory budget; `walk` lists directories, `members` reads archives, and
`rejections` words what cannot load.
"""

from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import replace
from typing import BinaryIO

from rlm_cli.errors import UsageError
from rlm_cli.format import format_bytes
from rlm_cli.inputs import archives, rejections, tokens
from rlm_cli.inputs.ignore import Filters
from rlm_cli.inputs.members import MemberReader
from rlm_cli.inputs.memory import memory_bytes
from rlm_cli.inputs.model import (
    STDIN_NAME,
    ArchiveKind,
    Compression,
    InputOptions,
    Inputs,
    Skip,
    Source,
)
from rlm_cli.inputs.rejections import Rejected
from rlm_cli.inputs.scan import Scan, scan
from rlm_cli.inputs.secret_files import secret_kind
from rlm_cli.inputs.sniff import (
    SNIFF_BYTES,
    TextEncoding,
    archive_of,
    compression_of,
    sniff_text,
    structure_of,
)
from rlm_cli.inputs.walk import walk

SPOOL_CHUNK = 1 << 20
COMPRESSED_SAMPLES = 256  # of SAMPLE_BYTES each, taken as the stream is scanned


def resolve(args: list[str], stdin: BinaryIO | None, options: InputOptions | None = None) -> Inputs:
    """Resolve command-line inputs. `-` (or no args with `stdin` given) reads stdin."""
    if not args:
        if stdin is None:
            raise UsageError(
                "no input: give files or directories (before the question, for `rlm ask`), "
                "or pipe text in"
            )
        args = ["-"]
    resolver = _Resolver(options or InputOptions())
    inputs = resolver.inputs
    try:
        for arg in args:
            resolver.add_argument(arg, stdin)
        _check_unique_names(inputs.sources)
        if resolver.options.count_tokens:
            estimate = tokens.estimate(inputs.sources, archives.read_all, archives.read_at)
            inputs.sources = [
                replace(source, tokens=count)
                for source, count in zip(inputs.sources, estimate.tokens, strict=True)
            ]
            inputs.tokens_method = estimate.method
    except BaseException:
        inputs.cleanup()
        raise
    if len(inputs.sources) != 1 or resolver.containers:
        inputs.shape = "dict"
    return inputs


class _Resolver:
    """One resolve's state: the Inputs built so far, the filters, and the memory budget that
    every file, decompressed stream and archive member is charged against."""

    def __init__(self, options: InputOptions) -> None:
        self.options = options
        self.filters = Filters(options.include, options.exclude)
        self.inputs = Inputs(sources=[], shape="single")
        self.memory = options.memory_bytes or memory_bytes()
        self.memory_limit = int(self.memory * options.max_memory_share)
        self.containers = 0  # directories and archives: they make `context` a dict
        self.members = MemberReader(self.filters, options.max_file_bytes)
        self.total = 0

    # ----- arguments -----

    def add_argument(self, arg: str, stdin: BinaryIO | None) -> None:
        if arg == "-":
            if stdin is None:
                raise UsageError("'-' reads standard input, but nothing is piped in")
            self._stdin(stdin)
            return
        try:
            info = os.stat(arg)
        except FileNotFoundError:
            raise UsageError(f"{arg}: no such file or directory; check the path") from None
        except PermissionError:
            raise UsageError(f"{arg}: permission denied; check its permissions") from None
        except OSError as exc:
            raise UsageError(
                f"{arg}: cannot open it ({rejections.why(exc)}); check the path"
            ) from None
        if stat.S_ISDIR(info.st_mode):
            self._directory(arg)
        elif stat.S_ISREG(info.st_mode):
            before = len(self.inputs.sources)
            self._explicit(arg, arg, os.path.abspath(arg), info.st_size)
            self._warn_if_secret(arg, before)
        else:
            raise UsageError(
                f"{arg}: a {rejections.file_type(info.st_mode)}, not a regular file or directory; "
                "give a file, a directory, or '-' for piped input"
            )

    def _explicit(self, name: str, display: str, path: str, size: int, **kw: bool) -> None:
        try:
            self._file(name, display, path, size, rel="", explicit=True, **kw)
        except Rejected as rejected:
            raise UsageError(f"{display}: {rejected.message}") from None

    def _warn_if_secret(self, arg: str, before: int) -> None:
        """A named file that a walk would skip as a secret still loads (the user asked for it),
        but the user is told: its text will reach the model provider."""
        kind = secret_kind(os.path.abspath(arg).replace(os.sep, "/"))
        if kind is None:
            return
        warning = f"looks like a secret file ({kind}); loaded because it was named"
        sources = self.inputs.sources
        sources[before:] = [replace(source, warning=warning) for source in sources[before:]]
        if self.options.warn is not None:
            self.options.warn(f"{arg}: {warning}")

    def _stdin(self, stdin: BinaryIO) -> None:
        # mkstemp creates the file readable by this user only.
        fd, path = tempfile.mkstemp(prefix="rlm-stdin-", suffix=".txt")
        self.inputs.temp_paths.append(path)
        size = 0
        with os.fdopen(fd, "wb") as spool:
            while chunk := stdin.read(SPOOL_CHUNK):
                spool.write(chunk)
                size += len(chunk)
        if size == 0:
            raise UsageError("standard input is empty; pipe some text in or give files")
        self._explicit(STDIN_NAME, "standard input", path, size, by_content=True)

    # ----- one file -----

    def _file(
        self,
        name: str,
        display: str,
        path: str,
        size: int,
        *,
        rel: str,
        explicit: bool,
        by_content: bool = False,
    ) -> None:
        if size == 0:
            if explicit:
                raise rejections.empty("the file is empty; there is nothing to ask about")
            # Inside a folder an empty file is still a file (git tracks it; `__init__.py` says
            # something about a package): it loads as "".
            self.inputs.sources.append(Source(name=name, path=path, size=0, display=display))
            return
        kind = archive_of(name if name != STDIN_NAME else "")
        if kind is not None:
            self._archive(name, display, path, kind, rel=rel, explicit=explicit)
            return
        try:
            with open(path, "rb") as handle:
                head = handle.read(SNIFF_BYTES)
                compression = compression_of(head)
                if compression is not None:
                    handle.close()
                    self._compressed(name, display, path, compression, explicit=explicit)
                    return
                encoding = self._text_encoding(head, size, explicit)
                self._reserve(size, display)
                handle.seek(0)
                result = scan(handle)
        except OSError as exc:
            raise rejections.unreadable(exc) from None
        self._add(
            Source(
                name=name,
                path=path,
                display=display,
                size=result.size,
                encoding=encoding.encoding,
                bom=encoding.bom,
                invalid_bytes=result.invalid,
            ),
            head,
            by_content=by_content,
        )

    def _text_encoding(self, head: bytes, size: int, explicit: bool) -> TextEncoding:
        cap = self.options.max_file_bytes
        if not explicit and size > cap:
            raise rejections.too_large(size, cap)
        encoding = sniff_text(head)
        if encoding is None:
            raise rejections.binary("")
        return encoding

    def _compressed(
        self, name: str, display: str, path: str, kind: Compression, *, explicit: bool
    ) -> None:
        cap = None if explicit else self.options.max_file_bytes
        room = self.memory_limit - self.total
        limit = room if cap is None else min(cap, room)
        with rejections.reading_packed(kind):
            raw, stream = archives.open_compressed(path, kind)
            with raw, stream:
                result = scan(stream, limit=limit, samples=COMPRESSED_SAMPLES)
        if result.encoding is None:
            raise rejections.binary(f"{kind}-compressed ")
        if result.stopped:
            if cap is not None and result.size > cap:
                raise rejections.too_large(result.size, cap, "decompressed, ")
            self._reserve(result.size, display)  # raises: over the memory limit
        if result.size <= result.encoding.bom and explicit:
            raise rejections.empty(f"the file decompresses to no text ({kind})")
        self._add_unpacked(result, name, path, display, compression=kind)

    # ----- containers -----

    def _directory(self, arg: str) -> None:
        self.containers += 1
        listing = walk(arg, self.filters)
        before_sources, before_skips = len(self.inputs.sources), len(self.inputs.skipped)
        self.inputs.skipped.extend(listing.skipped)
        for rel, path, size in listing.files:
            shown = os.path.join(arg, rel)
            try:
                self._file(rel, shown, os.path.abspath(path), size, rel=rel, explicit=False)
            except Rejected as rejected:
                self._skip(Skip(shown, rejected.reason, rejected.detail))
        loaded = self.inputs.sources[before_sources:]
        if not loaded:
            skipped = self.inputs.skipped[before_skips:]
            raise UsageError(rejections.nothing_loaded(arg, "directory", listing.entries, skipped))
        if not any(source.size for source in loaded):
            raise UsageError(f"{arg}: every file in the directory is empty; nothing to ask about")

    def _archive(
        self, name: str, display: str, path: str, kind: ArchiveKind, *, rel: str, explicit: bool
    ) -> None:
        self.containers += 1
        with rejections.reading_packed(kind):
            expanded = self.members.expand(path, display, kind, root=rel)
        self.inputs.skipped.extend(expanded.skipped)
        for member, result in expanded.loadable:
            self._add_unpacked(
                result,
                f"{name}/{member.name}",
                path,
                f"{display}/{member.name}",
                archive=kind,
                member=member.stored,
            )
        if not expanded.loadable:
            if explicit:
                raise UsageError(
                    rejections.nothing_loaded(
                        display, "archive", expanded.entries, expanded.skipped
                    )
                )
            if not expanded.entries:
                self._skip(Skip(display, "empty", "an archive with no files"))

    # ----- bookkeeping -----

    def _add(self, source: Source, head: bytes, *, by_content: bool = False) -> None:
        head_text = str(memoryview(head)[source.bom :], source.encoding, "replace")
        structure = structure_of(source.name, head_text, by_content=by_content)
        if structure is not None:
            source = replace(source, kind=structure[0], preview=structure[1])
        self.inputs.sources.append(source)

    def _add_unpacked(
        self,
        result: Scan,
        name: str,
        path: str,
        display: str,
        *,
        compression: Compression | None = None,
        archive: ArchiveKind | None = None,
        member: str | None = None,
    ) -> None:
        """Add a text read through a decompressor (a compressed file or an archive member), with
        the samples its token estimate needs."""
        assert result.encoding is not None
        self._reserve(result.size, display)
        source = Source(
            name=name,
            path=path,
            display=display,
            size=result.size,
            encoding=result.encoding.encoding,
            bom=result.encoding.bom,
            compression=compression,
            archive=archive,
            member=member,
            invalid_bytes=result.invalid,
            samples=result.samples,
        )
        self._add(source, result.head)

    def _skip(self, skip: Skip) -> None:
        self.inputs.skipped.append(skip)

    def _reserve(self, size: int, display: str) -> None:
        """Refuse inputs that could not be held in the worker's memory."""
        if self.total + size > self.memory_limit:
            share = self.options.max_memory_share
            raise UsageError(
                f"{display}: the inputs come to over {format_bytes(self.total + size)} of text, "
                f"more than {share:.0%} of this machine's {format_bytes(self.memory)} of memory; "
                "narrow them with --include/--exclude globs (or raise max_memory_share)"
            )
        self.total += size


def _check_unique_names(sources: list[Source]) -> None:
    """Files from two directories may share a relative name; the dict needs distinct keys."""
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise UsageError(
                f"{source.path}: two inputs would both be named {source.name!r} in the context; "
                "give the directories' parent instead"
            )
        seen.add(source.name)

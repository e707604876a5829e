"""Command-line inputs -> Sources: files, directories, archives and stdin, filtered and bounded.

The host reads each input in fixed-size chunks (to sniff it, count its invalid bytes, measure
what a compressed file holds, sample it for tokens) and never holds one whole: the worker is the
only process that does, once.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import posixpath
import stat
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import IO, BinaryIO, cast

from rlm_cli.errors import UsageError
from rlm_cli.inputs import archives, tokens
from rlm_cli.inputs.ignore import (
    IGNORE_FILE_LIMIT,
    IGNORE_FILES,
    VCS_NAMES,
    Filters,
    IgnoreRules,
    read_ignore_file,
)
from rlm_cli.inputs.model import (
    STDIN_NAME,
    ArchiveKind,
    Compression,
    InputOptions,
    Inputs,
    Skip,
    Source,
)
from rlm_cli.inputs.scan import Readable, Scan, scan
from rlm_cli.inputs.secret_files import secret_kind
from rlm_cli.inputs.sniff import (
    SNIFF_BYTES,
    TextEncoding,
    archive_of,
    compression_of,
    sniff_text,
    structure_of,
)

SPOOL_CHUNK = 1 << 20
COMPRESSED_SAMPLES = 256  # of SAMPLE_BYTES each, taken as the stream is scanned
# Archive members keep token samples up to this many bytes in all; members past it are
# estimated at the overall tokens-per-byte ratio.
SAMPLE_BUDGET = 8 << 20
MEMBER_WHOLE = 64 << 10  # members this small keep their whole text as their sample


class _Rejected(Exception):
    """A file that cannot be loaded: skipped inside a directory, an error when named itself."""

    def __init__(self, reason: str, detail: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.detail, self.message = reason, detail, message


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


def memory_bytes() -> int:
    """The machine's memory, or the container's limit when that is lower."""
    total = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for limit_file in (
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ):
        try:
            with open(limit_file) as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value.isdigit():
            total = min(total, int(value))
    return total


def format_bytes(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


@dataclass
class _Candidate:
    """An archive member that passed the name filters, with what its scan found."""

    member: archives.Member
    result: Scan | None
    rejected: _Rejected | None


class _Resolver:
    def __init__(self, options: InputOptions) -> None:
        self.options = options
        self.filters = Filters(options.include, options.exclude)
        self.inputs = Inputs(sources=[], shape="single")
        self.memory = options.memory_bytes or memory_bytes()
        self.memory_limit = int(self.memory * options.max_memory_share)
        self.containers = 0  # directories and archives: they make `context` a dict
        self.sample_budget = SAMPLE_BUDGET
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
            raise UsageError(f"{arg}: cannot open it ({_why(exc)}); check the path") from None
        if stat.S_ISDIR(info.st_mode):
            self._walk(arg)
        elif stat.S_ISREG(info.st_mode):
            before = len(self.inputs.sources)
            self._explicit(arg, arg, os.path.abspath(arg), info.st_size)
            self._warn_if_secret(arg, before)
        else:
            raise UsageError(
                f"{arg}: a {_file_type(info.st_mode)}, not a regular file or directory; "
                "give a file, a directory, or '-' for piped input"
            )

    def _explicit(self, name: str, display: str, path: str, size: int, **kw: bool) -> None:
        try:
            self._file(name, display, path, size, rel="", explicit=True, **kw)
        except _Rejected as rejected:
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
                raise _Rejected("empty", "", "the file is empty; there is nothing to ask about")
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
            raise _unreadable(exc) from None
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
            raise _too_large(size, cap)
        encoding = sniff_text(head)
        if encoding is None:
            raise _binary("")
        return encoding

    def _compressed(
        self, name: str, display: str, path: str, kind: Compression, *, explicit: bool
    ) -> None:
        cap = None if explicit else self.options.max_file_bytes
        room = self.memory_limit - self.total
        limit = room if cap is None else min(cap, room)
        with _reading_packed(kind):
            raw, stream = archives.open_compressed(path, kind)
            with raw, stream:
                result = scan(stream, limit=limit, samples=COMPRESSED_SAMPLES)
        if result.encoding is None:
            raise _binary(f"{kind}-compressed ")
        if result.stopped:
            if cap is not None and result.size > cap:
                raise _too_large(result.size, cap, "decompressed, ")
            self._reserve(result.size, display)  # raises: over the memory limit
        if result.size <= result.encoding.bom and explicit:
            raise _Rejected("empty", "", f"the file decompresses to no text ({kind})")
        self._add_unpacked(result, name, path, display, compression=kind)

    # ----- archives -----

    def _archive(
        self, name: str, display: str, path: str, kind: ArchiveKind, *, rel: str, explicit: bool
    ) -> None:
        self.containers += 1
        before_sources, before_skips = len(self.inputs.sources), len(self.inputs.skipped)
        with _reading_packed(kind):
            candidates, rules, members = (
                self._zip_members(path, display, rel)
                if kind == "zip"
                else self._tar_members(path, display, rel)
            )
        shown_folders: set[str] = set()
        for candidate in sorted(candidates, key=lambda c: c.member.name):
            member = candidate.member
            shown = f"{display}/{member.name}"
            reason = rules.check_with_parents(member.name, False)
            if reason is not None:
                folder, why = reason
                if folder is None:
                    self._skip(Skip(shown, "ignored", why))
                elif folder not in shown_folders:
                    shown_folders.add(folder)
                    self._skip(Skip(f"{display}/{folder}/", "ignored", why, folder=True))
                continue
            if candidate.rejected is not None:
                self._skip(Skip(shown, candidate.rejected.reason, candidate.rejected.detail))
                continue
            assert candidate.result is not None
            self._add_unpacked(
                candidate.result,
                f"{name}/{member.name}",
                path,
                shown,
                archive=kind,
                member=member.stored,
            )
        if len(self.inputs.sources) == before_sources:
            skipped = self.inputs.skipped[before_skips:]
            if explicit:
                raise UsageError(_nothing_loaded(display, "archive", members, skipped))
            if not members:
                self._skip(Skip(display, "empty", "an archive with no files"))

    def _member_name_check(
        self, member: archives.Member, rel: str, display: str, folders: set[str]
    ) -> bool:
        """Apply the checks that need only the member's name; record a skip and return False
        when it fails one. (Ignore files are applied later, once all of them are known.)"""
        shown = f"{display}/{member.name}"
        if member.kind == "dir":
            return False
        if member.kind != "file":
            reason, detail = {
                "unsafe": ("unsafe path", "its path points outside the archive"),
                "link": ("link in archive", "links are not followed"),
                "special": ("not a regular file", "a device or FIFO entry"),
                "encrypted": ("encrypted", "password-protected"),
                "duplicate": ("duplicate name", "an earlier member has the same path"),
            }[member.kind]
            self._skip(Skip(shown, reason, detail))
            return False
        parts = member.name.split("/")
        vcs = next((i for i, part in enumerate(parts) if part in VCS_NAMES), None)
        if vcs is not None:
            folder = "/".join(parts[: vcs + 1])
            key = f"{display}/{folder}" + ("/" if vcs < len(parts) - 1 else "")
            if key not in folders:  # one skip for a whole .git/, not one per object in it
                folders.add(key)
                self._skip(Skip(key, "version control", folder=vcs < len(parts) - 1))
            return False
        full = f"{rel}/{member.name}" if rel else member.name
        full_parts = full.split("/")
        for depth in range(1, len(full_parts) + 1):
            is_dir = depth < len(full_parts)
            why = self.filters.excluded("/".join(full_parts[:depth]), is_dir)
            if why:
                self._skip(Skip(shown, "excluded", why))
                return False
        why = self.filters.not_included(full)
        if why:
            self._skip(Skip(shown, "not included", why))
            return False
        kind = self.filters.secret(full, full)
        if kind:
            self._skip(Skip(shown, "secret", f"{kind}; --include it by name to load it"))
            return False
        return True

    def _member_samples(self, size: int) -> int:
        if self.sample_budget <= 0:
            return 0
        count = max(1, min(size // (64 << 10), 64))
        self.sample_budget -= 2 * count * tokens.SAMPLE_BYTES  # scan keeps up to twice as many
        return count

    def _scan_member(self, member: archives.Member, stream: IO[bytes]) -> _Candidate:
        cap = self.options.max_file_bytes
        if member.size > cap:
            return _Candidate(member, None, _too_large(member.size, cap))
        if archive_of(member.name) is not None:
            return _Candidate(member, None, _nested())
        whole = member.size <= MEMBER_WHOLE and self.sample_budget >= member.size
        if whole:
            data = stream.read()
            self.sample_budget -= len(data)
            result = scan(io.BytesIO(data))
            if result.encoding is not None:
                result = replace(result, samples=(data,))
        else:
            samples = self._member_samples(member.size)
            result = scan(cast(Readable, stream), samples=samples)
        if compression_of(result.head) is not None:
            return _Candidate(member, None, _nested())
        if result.encoding is None:
            return _Candidate(member, None, _binary(""))
        return _Candidate(member, result, None)

    def _zip_members(
        self, path: str, display: str, rel: str
    ) -> tuple[list[_Candidate], _ArchiveRules, list[archives.Member]]:
        import zipfile

        members = archives.list_zip(path)
        rules = _ArchiveRules()
        candidates = []
        folders: set[str] = set()
        with zipfile.ZipFile(path) as archive:
            for member in members:
                if (
                    member.kind == "file"
                    and posixpath.basename(member.name) in IGNORE_FILES
                    and member.size <= IGNORE_FILE_LIMIT
                ):
                    data = archive.read(member.stored)
                    rules.add(member.name, f"{display}/{member.name}", _lines(data))
            for member in members:
                if self._member_name_check(member, rel, display, folders):
                    with archive.open(member.stored) as stream:
                        candidates.append(self._scan_member(member, stream))
        return candidates, rules, [m for m in members if m.kind != "dir"]

    def _tar_members(
        self, path: str, display: str, rel: str
    ) -> tuple[list[_Candidate], _ArchiveRules, list[archives.Member]]:
        rules = _ArchiveRules()
        candidates = []
        members = []
        folders: set[str] = set()
        for member, stream in archives.iter_tar(path):
            if member.kind == "dir":
                continue
            members.append(member)
            if not self._member_name_check(member, rel, display, folders) or stream is None:
                continue
            if posixpath.basename(member.name) in IGNORE_FILES and member.size <= IGNORE_FILE_LIMIT:
                data = stream.read()
                rules.add(member.name, f"{display}/{member.name}", _lines(data))
                candidates.append(self._scan_member(member, io.BytesIO(data)))
            else:
                candidates.append(self._scan_member(member, stream))
        return candidates, rules, members

    # ----- directories -----

    def _walk(self, arg: str) -> None:
        self.containers += 1
        root = os.path.abspath(arg)
        rules = IgnoreRules()
        rules.load_outer(root)
        before_sources, before_skips = len(self.inputs.sources), len(self.inputs.skipped)
        found: list[tuple[str, str, int]] = []
        entries = 0
        root_info = os.stat(root)
        visited = {(root_info.st_dev, root_info.st_ino)}
        stack = [("", root)]
        while stack:
            rel_dir, dir_path = stack.pop()
            try:
                with os.scandir(dir_path) as listing:
                    children = sorted(listing, key=lambda entry: entry.name)
            except OSError as exc:
                if not rel_dir:
                    raise UsageError(
                        f"{arg}: cannot list the directory ({_why(exc)}); check its permissions"
                    ) from None
                self._skip(
                    Skip(os.path.join(arg, rel_dir) + "/", "unreadable", _why(exc), folder=True)
                )
                continue
            for filename in IGNORE_FILES:
                if any(child.name == filename for child in children):
                    ignore_path = os.path.join(dir_path, filename)
                    label = os.path.join(arg, rel_dir, filename)
                    rules.add(rel_dir, label, read_ignore_file(ignore_path))
            subdirs = []
            for child in children:
                entries += 1
                rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
                shown = os.path.join(arg, rel)
                try:
                    info = child.stat()  # follows symlinks
                except OSError as exc:
                    loop = exc.errno == errno.ELOOP
                    reason = "symlink loop" if loop else "unreadable"
                    detail = "the link leads back to itself" if loop else _why(exc)
                    if not loop and child.is_symlink():
                        detail = "a broken symbolic link"
                    self._skip(Skip(shown, reason, detail))
                    continue
                is_dir = stat.S_ISDIR(info.st_mode)
                why = self._name_check(child.name, rel, child.path, is_dir, rules)
                if why is not None:
                    self._skip(Skip(shown + ("/" if is_dir else ""), *why, folder=is_dir))
                elif is_dir:
                    key = (info.st_dev, info.st_ino)
                    if key in visited:
                        detail = "a symbolic link to a folder already read"
                        self._skip(Skip(shown + "/", "symlink loop", detail, folder=True))
                    else:
                        visited.add(key)
                        subdirs.append((rel, child.path))
                elif not stat.S_ISREG(info.st_mode):
                    detail = f"a {_file_type(info.st_mode)}"
                    self._skip(Skip(shown, "not a regular file", detail))
                else:
                    found.append((rel, child.path, info.st_size))
            stack.extend(reversed(subdirs))
        for rel, path, size in sorted(found):
            shown = os.path.join(arg, rel)
            try:
                self._file(rel, shown, os.path.abspath(path), size, rel=rel, explicit=False)
            except _Rejected as rejected:
                self._skip(Skip(shown, rejected.reason, rejected.detail))
        loaded = self.inputs.sources[before_sources:]
        if not loaded:
            skipped = self.inputs.skipped[before_skips:]
            raise UsageError(_nothing_loaded(arg, "directory", range(entries), skipped))
        if not any(source.size for source in loaded):
            raise UsageError(f"{arg}: every file in the directory is empty; nothing to ask about")

    def _name_check(
        self, name: str, rel: str, path: str, is_dir: bool, rules: IgnoreRules
    ) -> tuple[str, str] | None:
        if name in VCS_NAMES:
            return "version control", ""
        why = rules.check(rel, is_dir)
        if why:
            return "ignored", why
        why = self.filters.excluded(rel, is_dir)
        if why:
            return "excluded", why
        if not is_dir:
            why = self.filters.not_included(rel)
            if why:
                return "not included", why
            # By the path on disk, so that walking ~/.aws itself still finds .aws/credentials.
            kind = self.filters.secret(rel, path.replace(os.sep, "/"))
            if kind:
                return "secret", f"{kind}; name it, or --include it by name, to load it"
        return None

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


class _ArchiveRules:
    """Ignore files found inside an archive, applied to its members by their paths."""

    def __init__(self) -> None:
        self.rules = IgnoreRules()

    def add(self, ignore_file: str, label: str, lines: list[str]) -> None:
        self.rules.add(posixpath.dirname(ignore_file), label, lines)

    def check_with_parents(self, path: str, is_dir: bool) -> tuple[str | None, str] | None:
        """(ignored folder or None, why) when `path` or a folder above it is ignored."""
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            why = self.rules.check(folder, True)
            if why:
                return folder, why
        why = self.rules.check(path, is_dir)
        return (None, why) if why else None


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "replace").splitlines()


def _nothing_loaded(path: str, what: str, entries: Iterable[object], skipped: list[Skip]) -> str:
    if not any(True for _ in entries):
        return f"{path}: the {what} is empty; give one with text files in it"
    counts: dict[str, int] = {}
    for skip in skipped:
        counts[skip.reason] = counts.get(skip.reason, 0) + 1
    reasons = ", ".join(f"{n} {reason}" for reason, n in counts.items())
    return (
        f"{path}: every entry of the {what} was skipped ({reasons}); "
        f"run `rlm inspect {path}` to see why, or adjust --include/--exclude"
    )


def _binary(what: str) -> _Rejected:
    return _Rejected(
        "binary",
        f"{what}data with a NUL byte in its first 8 KB",
        f"{what}binary data (a NUL byte in its first 8 KB); rlm reads text, plain or in "
        ".gz/.bz2/.xz/.zip/.tar files",
    )


def _nested() -> _Rejected:
    return _Rejected(
        "nested archive",
        "archives inside archives are not expanded",
        "an archive inside an archive; extract it first",
    )


def _too_large(size: int, cap: int, what: str = "") -> _Rejected:
    detail = f"{what}{format_bytes(size)}, over the {format_bytes(cap)} limit per file"
    return _Rejected(
        "too large", detail, f"{detail}; raise it with --max-file-size or name the file itself"
    )


@contextlib.contextmanager
def _reading_packed(kind: str) -> Iterator[None]:
    """Errors reading a compressed file or an archive as the rejections users see: a damaged
    stream is corrupt, anything else the system refused is unreadable."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, archives.DECOMPRESS_ERRORS) or exc.errno is None:
            raise _corrupt(kind, exc) from None
        raise _unreadable(exc) from None
    except archives.DECOMPRESS_ERRORS as exc:
        raise _corrupt(kind, exc) from None


def _corrupt(kind: str, exc: BaseException) -> _Rejected:
    why = str(exc) or type(exc).__name__
    return _Rejected(
        "corrupt", f"not valid {kind} data", f"not valid {kind} data ({why}); check the file"
    )


def _unreadable(exc: OSError) -> _Rejected:
    if isinstance(exc, PermissionError):
        return _Rejected(
            "unreadable", "permission denied", "permission denied; check the file's permissions"
        )
    return _Rejected("unreadable", _why(exc), f"cannot read the file ({_why(exc)})")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISDIR(mode):
        return "directory"
    return "special file"


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

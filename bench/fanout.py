"""Sub-call fan-out: one cell sends N prompts through llm_query_batched to a loopback
OpenAI-compatible server that adds a fixed latency to every request.

    python bench/fanout.py            # speed: 1,000 prompts x 200 ms at concurrency 64
    python bench/fanout.py --memory   # memory: 1,000 then 10,000 prompts, zero latency

Speed: the fan-out time (first sub-call started to last finished, from the run's trace) against
the ideal ceil(N / concurrency) * latency; target (issue 5) at most 1.15x.
Memory: the rlm process's peak RSS for 1,000 and for 10,000 sub-calls, side by side; flat means
the ratio stays near 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlm_cli.bench.fake_llm import FakeLLM

CODE = "```repl\nreplies = llm_query_batched([f'item {i}' for i in range(COUNT)])\nFINAL(len(replies))\n```"
# Runs rlm in this interpreter and reports its own peak RSS (KiB) on the last stderr line.
LAUNCHER = (
    "import resource, runpy, sys\n"
    "sys.argv = ['rlm'] + sys.argv[1:]\n"
    "try:\n    runpy.run_module('rlm_cli', run_name='__main__')\n"
    "finally:\n    print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


@dataclass
class Measured:
    fanout_s: float
    peak_mb: float


def measure(prompts: int, concurrency: int, latency: float) -> Measured:
    code = CODE.replace("COUNT", str(prompts))
    with tempfile.TemporaryDirectory() as tmp, FakeLLM([code], latency_s=latency) as fake:
        trace = Path(tmp) / "run.jsonl"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                "ask",
                "--provider",
                "openai",
                "--base-url",
                f"{fake.url}/v1",
            ]
            + ["--model", "root", "--sub-model", "worker", "--max-concurrency", str(concurrency)]
            + ["--json", "-q", "--no-cache", "--trace", str(trace), "q"],
            input=b"context",
            capture_output=True,
            env={**os.environ, "OPENAI_API_KEY": fake.api_key},
            check=False,
        )
        if json.loads(proc.stdout or b"{}").get("answer") != str(prompts):
            sys.exit(f"rlm failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        records = [json.loads(line) for line in trace.read_text().splitlines()]
    starts = [r["ts"] for r in records if r["type"] == "subcall_started"]
    ends = [r["ts"] for r in records if r["type"] == "subcall_finished"]
    peak_kib = int(proc.stderr.decode().strip().splitlines()[-1].split()[-1])
    return Measured(max(ends) - min(starts), peak_kib / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--memory", action="store_true", help="compare 1,000 and 10,000 sub-calls")
    options = parser.parse_args()
    if options.memory:
        small = measure(1000, options.concurrency, 0.0)
        large = measure(10000, options.concurrency, 0.0)
        print("peak RSS of the rlm process, zero-latency sub-calls:")
        print(f"   1,000 sub-calls: {small.peak_mb:.0f} MB  ({small.fanout_s:.1f} s)")
        print(f"  10,000 sub-calls: {large.peak_mb:.0f} MB  ({large.fanout_s:.1f} s)")
        print(f"  ratio: {large.peak_mb / small.peak_mb:.3f}  (flat: close to 1)")
        return
    latency = options.latency_ms / 1000
    result = measure(options.prompts, options.concurrency, latency)
    ideal = math.ceil(options.prompts / options.concurrency) * latency
    print(
        f"{options.prompts} prompts, concurrency {options.concurrency}, {options.latency_ms:g} ms each"
    )
    print(
        f"  fan-out: {result.fanout_s:.2f} s   ideal: {ideal:.2f} s   ratio: {result.fanout_s / ideal:.3f} (target <= 1.15)"
    )
    print(f"  peak RSS of the rlm process: {result.peak_mb:.0f} MB")


if __name__ == "__main__":
    main()

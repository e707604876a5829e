"""Sub-call fan-out: one cell sends N prompts through llm_query_batched to a loopback
OpenAI-compatible server that adds a fixed latency to every request. The fan-out time (first
sub-call started to last finished, from the run's trace) is compared with the ideal
ceil(N / concurrency) * latency, side by side in one run. Also reports the host's peak RSS.

    python bench/fanout.py [--prompts 1000] [--concurrency 64] [--latency-ms 200]
    python bench/fanout.py --prompts 10000 --latency-ms 0   # memory stays flat

Target (issue 5): at most 1.15x the ideal for 1,000 prompts, concurrency 64, 200 ms.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlm_cli.bench.fake_llm import FakeLLM

CODE = "```repl\nreplies = llm_query_batched([f'item {i}' for i in range({count})])\nFINAL(len(replies))\n```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    options = parser.parse_args()
    latency = options.latency_ms / 1000
    with tempfile.TemporaryDirectory() as tmp, FakeLLM([CODE.replace('{count}', str(options.prompts))], latency_s=latency) as fake:
        trace = Path(tmp) / "run.jsonl"
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "rlm_cli", "ask", "--provider", "openai", "--base-url", f"{fake.url}/v1"]
            + ["--model", "root", "--sub-model", "worker", "--max-concurrency", str(options.concurrency)]
            + ["--json", "-q", "--trace", str(trace), "q"],
            input=b"context",
            capture_output=True,
            env={**os.environ, "OPENAI_API_KEY": fake.api_key},
            check=False,
        )
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            sys.exit(f"rlm failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        result = json.loads(proc.stdout)
        assert result["answer"] == str(options.prompts), result
        records = [json.loads(line) for line in trace.read_text().splitlines()]
    starts = [r["ts"] for r in records if r["type"] == "subcall_started"]
    ends = [r["ts"] for r in records if r["type"] == "subcall_finished"]
    fanout = max(ends) - min(starts)
    ideal = math.ceil(options.prompts / options.concurrency) * latency
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"{options.prompts} prompts, concurrency {options.concurrency}, {options.latency_ms:g} ms each")
    print(f"  fan-out: {fanout:.2f} s   ideal: {ideal:.2f} s   ratio: {fanout / ideal if ideal else float('nan'):.3f} (target <= 1.15)")
    print(f"  whole run: {wall:.2f} s; peak RSS of the rlm process: {peak_kb / 1024:.0f} MB")


if __name__ == "__main__":
    main()

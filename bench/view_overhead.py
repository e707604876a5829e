"""Cost of the live tree view: one run of 1,000 sub-calls with `--view tree` under a
pseudo-terminal, against the same run with `--view none`, side by side, alternating.

    python bench/view_overhead.py [--runs 3] [--subcalls 1000] [--latency-ms 100]

The model is the simulated OpenAI-compatible server (rlm_cli.bench.fake_llm) on loopback, so the
run makes real HTTP requests through the real SDK. Target (issue 4): the tree costs <= 5% more.
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import threading
import time

from rlm_cli.bench.fake_llm import FakeLLM


def run_once(fake: FakeLLM, view: str, subcalls: int) -> float:
    """Wall time of one `rlm ask`, its stderr on a pty that is read as a terminal would."""
    leader, follower = pty.openpty()
    drained = threading.Thread(target=_drain, args=(leader,), daemon=True)
    drained.start()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_cli", "ask", "--provider", "openai", "--base-url"]
        + [f"{fake.url}/v1", "--model", "root", "--sub-model", "worker", "--view", view]
        + ["--max-concurrency", "16", "--no-cache", "count"],
        input=b"x" * subcalls,
        stdout=subprocess.PIPE,
        stderr=follower,
        env={**os.environ, "OPENAI_API_KEY": fake.api_key, "COLUMNS": "120", "LINES": "50"},
        check=True,
    )
    elapsed = time.perf_counter() - started
    os.close(follower)
    drained.join(timeout=5)
    os.close(leader)
    assert proc.stdout.strip() == str(subcalls).encode(), proc.stdout
    return elapsed


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--subcalls", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    options = parser.parse_args()
    code = (
        "```repl\nreplies = llm_query_batched(list(context))\n"
        "FINAL(sum(r == 'ok' for r in replies))\n```"
    )
    timings: dict[str, list[float]] = {"tree": [], "none": []}
    for _ in range(options.runs):
        for view in ("none", "tree"):
            script = [code]
            with FakeLLM(script, latency_s=options.latency_ms / 1000) as fake:
                timings[view].append(run_once(fake, view, options.subcalls))
    tree, none = statistics.median(timings["tree"]), statistics.median(timings["none"])
    print(f"{options.subcalls} sub-calls at {options.latency_ms:g} ms, {options.runs} run(s) each:")
    print(f"  --view none: median {none:.2f} s")
    print(f"  --view tree: median {tree:.2f} s (under a pty)")
    print(f"  ratio tree/none: {tree / none:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()

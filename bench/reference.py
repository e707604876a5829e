"""rlm against the reference implementation (PyPI `rlms`), whole processes on one loopback server.

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install rlms==0.1.3
    python bench/reference.py --reference-python /tmp/refvenv/bin/python [--rounds 15]

Both answer the same question about the same 100 KB file in 3 root iterations (two cells, then
FINAL) from a loopback server that answers at once; each round runs each side once, interleaved,
and the medians and their ratio are printed (issue 13: rlm no slower than the reference). The
reference runs in its own virtual environment (its package is `rlm`, its REPL is in-process).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from startup import RLM, env, repl  # bench/startup.py, beside this script

from rlm_cli.bench.fake_llm import FakeLLM

REFERENCE = """
import sys
from rlm import RLM
rlm = RLM(backend="openai", backend_kwargs={
    "model_name": "r", "base_url": sys.argv[1] + "/v1", "api_key": "test-key"})
print(rlm.completion(open(sys.argv[2]).read(), root_prompt="what is it?").response)
"""
# Three root turns: two cells, then the answer, each in its side's own way to answer (the
# reference's `answer` dict, rlm's FINAL).
CELLS = [repl("x = len(context)\nprint(x)"), repl("y = x * 2\nprint(y)")]
OURS = [*CELLS, repl("FINAL('done')")]
THEIRS = [*CELLS, repl('answer["content"] = "done"\nanswer["ready"] = True')]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env(), capture_output=True, timeout=120)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or b"done" not in done.stdout:
        raise SystemExit(f"{command[:3]} failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", required=True, help="the venv's python with rlms")
    parser.add_argument("--rounds", type=int, default=15)
    options = parser.parse_args()
    text = Path(tempfile.mkdtemp(prefix="rlm-bench-")) / "input.txt"
    text.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(3_500)))
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(options.rounds):
        with FakeLLM(list(OURS)) as server:
            ours.append(timed([
                *RLM, "ask", "--provider", "openai", "--base-url", f"{server.url}/v1",
                "--model", "r", "--sub-model", "w", "--no-cache", "-q", str(text), "what is it?",
            ]))  # fmt: skip
        assert len(server.requests) == 3, "rlm did not answer in 3 iterations"
        with FakeLLM(list(THEIRS)) as server:
            theirs.append(timed([options.reference_python, "-c", REFERENCE, server.url, str(text)]))
        assert len(server.requests) == 3, "the reference did not answer in 3 iterations"
    mine, reference = statistics.median(ours), statistics.median(theirs)
    print(f"{'rlm ask, 3 iterations, whole process':44} {mine * 1000:8.1f} ms")
    print(f"{'reference (rlms), 3 iterations':44} {reference * 1000:8.1f} ms")
    print(f"{'rlm ÷ reference':44} {mine / reference:8.2f} x (target ≤ 1)")


if __name__ == "__main__":
    main()

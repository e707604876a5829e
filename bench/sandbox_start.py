"""What the process sandbox costs at start: a worker with every layer against the same worker with
none (`--sandbox none`: one plain process, as before the sandbox), side by side, alternating.

    python bench/sandbox_start.py [--rounds 15]

Two measures: the worker's start to `ready` (Sandbox.start, with a 1 KB input), and a whole
`rlm ask` on the scripted provider (three cells). Target (issue 9): at most 100 ms more.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

from rlm_cli.inputs import from_value
from rlm_cli.sandbox.host import QueryRequest, Sandbox
from rlm_cli.sandbox.policy import Mode, make_policy

SCRIPT = """root:
  - "```repl\\nprint(len(context))\\n```"
  - "```repl\\nx = llm_query('a')\\n```"
  - "```repl\\nFINAL(x)\\n```"
sub:
  - reply: done
"""


async def _echo(request: QueryRequest) -> list[str]:
    return request.prompts


async def start_once(mode: Mode) -> float:
    inputs = from_value("x" * 1000)
    policy = make_policy(mode, input_bytes=1000, cell_timeout=120, max_iterations=30)
    sandbox = Sandbox(inputs, output_limit=1000, on_query=_echo, policy=policy)
    try:
        started = time.perf_counter()
        await sandbox.start()
        elapsed = time.perf_counter() - started
        assert (await sandbox.execute("print(len(context))", 10)).output == "1000\n"
        return elapsed
    finally:
        await sandbox.close()
        inputs.cleanup()


def ask_once(mode: str, script: str, text: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rlm_cli", "ask", "--provider", "scripted", "--script", script]
        + ["--sandbox", mode, "--quiet", text, "q?"],
        capture_output=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    assert proc.stdout == b"done\n", proc.stdout
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    modes: tuple[Mode, Mode] = ("none", "process")
    starts: dict[str, list[float]] = {mode: [] for mode in modes}
    asks: dict[str, list[float]] = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "s.yaml")
        text = os.path.join(tmp, "input.txt")
        with open(script, "w") as handle:
            handle.write(SCRIPT)
        with open(text, "w") as handle:
            handle.write("x" * 1000)
        for _ in range(args.rounds):
            for mode in modes:  # alternating, so drift on the machine hits both alike
                starts[mode].append(asyncio.run(start_once(mode)))
                asks[mode].append(ask_once(mode, script, text))
    for label, samples in (("worker start to ready", starts), ("rlm ask, 3 cells", asks)):
        none, process = (statistics.median(samples[mode]) * 1000 for mode in modes)
        print(
            f"{label:<22} none {none:7.1f} ms · process {process:7.1f} ms · "
            f"added {process - none:+6.1f} ms · ratio {process / none:.2f}"
        )


if __name__ == "__main__":
    main()

"""How fast rlm starts and loops, side by side with a bare HTTP client and `python -c pass`.

    python bench/startup.py [--rounds 15]

Measures, each as the median of interleaved rounds on this machine:
- launch to first request: from starting the process to the loopback server receiving its
  first model request, for `rlm ask` on a 100 KB file and for a bare aiohttp client posting the
  same kind of request (the floor for a Python tool);
- `rlm --help`, and `python -c pass` (the interpreter's own start);
- per-iteration overhead: in a 21-iteration run against a loopback server answering at once,
  the time from its first root request to its last, over 20 (reply, cell, events, request);
- a 3-iteration run, whole process, against a bare client posting 3 requests in one process;
- one root request with 400 messages of history, through rlm's provider and as a plain aiohttp
  post of the same body.

Targets (issue 13): launch to first request ≤ 0.6 s and ≤ 1.5x the bare client; per iteration
≤ 5 ms; --help ≤ 0.25 s; the 400-message request within 2x of the plain post.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rlm_cli
from rlm_cli.bench.fake_llm import FakeLLM

RLM = [sys.executable, "-m", "rlm_cli"]

# Posts argv[3] requests (default 1) one after another, as a loop of that many turns would.
BARE_CLIENT = """
import asyncio, sys, aiohttp
async def main():
    async with aiohttp.ClientSession() as session:
        body = {"model": "r", "messages": [{"role": "user", "content": open(sys.argv[2]).read()}]}
        for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
            async with session.post(sys.argv[1] + "/v1/chat/completions", json=body,
                                    headers={"authorization": "Bearer test-key"}) as response:
                await response.read()
asyncio.run(main())
"""


class StampedLLM(FakeLLM):
    """The loopback server, noting when each request arrives."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.arrivals: list[float] = []

    def arrived(self) -> None:
        self.arrivals.append(time.perf_counter())
        super().arrived()


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


def env() -> dict[str, str]:
    """The environment of every measured process. PYTHONDONTWRITEBYTECODE is dropped: a user's
    wheel install has its .pyc files (pip compiles them), and without them every run would
    measure compiling rlm_cli from source instead of starting it."""
    variables = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**variables, "OPENAI_API_KEY": "test-key", "RLM_CONFIG": os.devnull}


def to_first_request(command: list[str], server: StampedLLM) -> float:
    """Seconds from launching `command` to `server` receiving its first request."""
    server.arrivals.clear()
    started = time.perf_counter()
    subprocess.run(command, env=env(), capture_output=True, check=True, timeout=60)
    return server.arrivals[0] - started


def whole(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env(), capture_output=True, check=True, timeout=120)
    return time.perf_counter() - started


def ask(server: FakeLLM, path: str, *flags: str) -> list[str]:
    return [
        *RLM, "ask", "--provider", "openai", "--base-url", f"{server.url}/v1", "--model", "r",
        "--sub-model", "w", "--no-cache", "-q", *flags, path, "what is it?",
    ]  # fmt: skip


def history_request(server: FakeLLM, messages: int, rounds: int) -> tuple[float, float]:
    """Median seconds of one streamed root request with `messages` of history: rlm's provider,
    and a plain aiohttp post of the same messages."""
    import aiohttp

    from rlm_cli.config import Settings
    from rlm_cli.providers import make_providers
    from rlm_cli.providers.base import Message, ModelRequest

    history = tuple(
        Message("user" if i % 2 == 0 else "assistant", f"turn {i}: " + "x" * 400)
        for i in range(messages)
    )
    os.environ["OPENAI_API_KEY"] = "test-key"
    settings = Settings(provider="openai", base_url=f"{server.url}/v1", model="r", sub_model="w")

    async def measure() -> tuple[float, float]:
        root, _worker = make_providers(settings)
        mine, plain = [], []
        body = {"model": "r", "messages": [{"role": m.role, "content": m.content} for m in history]}
        async with aiohttp.ClientSession() as session:
            for _ in range(rounds):
                started = time.perf_counter()
                await root.stream(ModelRequest("r", history, "root"), lambda text: None)
                mine.append(time.perf_counter() - started)
                started = time.perf_counter()
                async with session.post(
                    f"{server.url}/v1/chat/completions",
                    data=json.dumps(body),
                    headers={"authorization": "Bearer test-key"},
                ) as response:
                    json.loads(await response.read())
                plain.append(time.perf_counter() - started)
        await root.aclose()
        return statistics.median(mine), statistics.median(plain)

    return asyncio.run(measure())


def median_of(rounds: int, measures: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Each measure `rounds` times, interleaved (so drift hits all alike), and its median."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for _ in range(rounds):
        for name, measure in measures.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    # Compiled once, as pip does on install, so the rounds measure starting, not compiling.
    compileall.compile_dir(Path(rlm_cli.__file__).parent, quiet=1)  # the package run below
    work = Path(tempfile.mkdtemp(prefix="rlm-bench-"))
    text = work / "input.txt"
    text.write_text("".join(f"line {i}: the quick brown fox\n" for i in range(3_500)))  # ~100 KB
    loop = [repl(f"x = {i}") for i in range(20)] + [repl("FINAL('done')")]

    def looping(replies: list[str]) -> float:
        with FakeLLM(replies) as server:  # root replies are counted per server: one per run
            return whole(ask(server, str(text)))

    def per_iteration() -> float:
        """One 21-iteration run: the time between its first and last root requests, per
        iteration (reply, cell, events, next request), as the server saw them arrive."""
        with StampedLLM(loop) as server:
            whole(ask(server, str(text)))
            return (server.arrivals[-1] - server.arrivals[0]) / (len(loop) - 1)

    with StampedLLM([repl("FINAL('done')")] * 10_000) as server:
        results = median_of(
            rounds,
            {
                "python -c pass": lambda: whole([sys.executable, "-c", "pass"]),
                "bare aiohttp client, launch to first request": lambda: to_first_request(
                    [sys.executable, "-c", BARE_CLIENT, server.url, str(text)], server
                ),
                "rlm ask, launch to first request": lambda: to_first_request(
                    ask(server, str(text)), server
                ),
                "rlm --help": lambda: whole([*RLM, "--help"]),
                "run of 3 iterations (loopback server)": lambda: looping(loop[-3:]),
                "bare aiohttp client, 3 requests, whole process": lambda: whole(
                    [sys.executable, "-c", BARE_CLIENT, server.url, str(text), "3"]
                ),
                "per iteration, 21 iterations (loopback server)": per_iteration,
            },
        )
        mine, plain = history_request(server, 400, rounds)

    for name, seconds in results.items():
        print(f"{name:48} {seconds * 1000:8.1f} ms")
    bare = results["bare aiohttp client, launch to first request"]
    first = results["rlm ask, launch to first request"]
    iteration = results["per iteration, 21 iterations (loopback server)"]
    print(f"{'launch to first request ÷ bare client':48} {first / bare:8.2f} x (target ≤ 1.5)")
    print(f"{'per-iteration overhead':48} {iteration * 1000:8.1f} ms (target ≤ 5)")
    three = results["run of 3 iterations (loopback server)"]
    bare_three = results["bare aiohttp client, 3 requests, whole process"]
    print(f"{'3-iteration run ÷ bare client, whole process':48} {three / bare_three:8.2f} x")
    print(f"{'400-message root request, rlm provider':48} {mine * 1000:8.1f} ms")
    print(f"{'400-message root request, plain aiohttp post':48} {plain * 1000:8.1f} ms")
    print(f"{'400-message request ÷ plain post':48} {mine / plain:8.2f} x (target ≤ 2)")


if __name__ == "__main__":
    main()

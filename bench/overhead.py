"""Loop overhead: per-iteration and per-sub-call cost of rlm itself, with a zero-latency model.

    python bench/overhead.py [--runs 5]

Uses the scripted provider (replies instantly), so everything measured is rlm's own work: the
root-call plumbing, events, the sandbox round trip, framing and the sub-call router.
Targets (issue 2): under 15 ms per iteration, under 2 ms per sub-call.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

from rlm_cli import RLM
from rlm_cli.events import CellFinished, Event, IterationStarted, RunFinished
from rlm_cli.providers.scripted import ScriptedProvider, SubRule

ITERATIONS = 30
SUBCALLS = 1_000


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


def per_iteration_ms() -> float:
    """Median wall time between consecutive iteration starts, over 30 trivial iterations."""
    replies = [repl(f"x = {i}\nprint(x)") for i in range(ITERATIONS - 1)] + [repl("FINAL(x)")]
    stamps: list[float] = []

    def on_event(event: Event) -> None:
        if isinstance(event, IterationStarted | RunFinished):
            stamps.append(time.perf_counter())

    provider = ScriptedProvider(replies, [])
    RLM(root_provider=provider, max_iterations=ITERATIONS).completion("x" * 1000, "q", on_event)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return statistics.median(gaps) * 1000


def per_subcall_ms() -> float:
    """Time of one cell that sends 1,000 prompts through llm_query_batched, per sub-call."""
    code = f"r = llm_query_batched([f'p{{i}}' for i in range({SUBCALLS})])\nassert len(r) == {SUBCALLS}"
    provider = ScriptedProvider([repl(code), repl("FINAL(len(r))")], [SubRule(None, "ok")])
    cells: list[float] = []

    def on_event(event: Event) -> None:
        if isinstance(event, CellFinished) and not cells:
            cells.append(event.elapsed_s)

    result = RLM(root_provider=provider, max_concurrency=16).completion("ctx", "q", on_event)
    assert result.answer == str(SUBCALLS), result
    return cells[0] / SUBCALLS * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    iteration = statistics.median(per_iteration_ms() for _ in range(runs))
    subcall = statistics.median(per_subcall_ms() for _ in range(runs))
    print(
        f"per-iteration overhead: median {iteration:.2f} ms  (target < 15 ms, ratio {iteration / 15:.2f})"
    )
    print(
        f"per-sub-call overhead:  median {subcall:.3f} ms (target < 2 ms, ratio {subcall / 2:.2f})"
    )


if __name__ == "__main__":
    main()

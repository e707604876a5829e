"""The figures the root model is told about its run: RunFacts, and the limits as it reads them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunFacts:
    """What the root model is told about its run's limits and tools (the prompt's figures)."""

    subcall_chars: int  # the most characters one sub-call prompt may hold (the worker's capacity)
    worker_model: str
    output_limit: int  # characters of a cell's output shown back
    max_iterations: int
    cell_timeout: float  # seconds of a cell's own compute (waits on sub-calls do not count)
    recursive: bool  # rlm_query starts child runs (depth left)
    max_depth: int
    max_subcalls: int | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    timeout: float | None = None


def seconds(value: float) -> str:
    """120 -> "120", 2.5 -> "2.5": a time limit as the prompt writes it."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def budgets(facts: RunFacts) -> list[str]:
    """The budgets that are set, each as a phrase ("at most 500 sub-calls"); [] when none is."""
    phrases = []
    if facts.max_subcalls:
        phrases.append(f"at most {facts.max_subcalls:,} sub-calls")
    if facts.max_cost:
        phrases.append(f"at most ${facts.max_cost:g} of model calls")
    if facts.max_tokens:
        phrases.append(f"at most {facts.max_tokens:,} tokens")
    if facts.timeout:
        phrases.append(f"{seconds(facts.timeout)} s for the whole run")
    return phrases


def depth(facts: RunFacts) -> str:
    if not facts.recursive:
        return "sub-calls are plain model calls, with no child runs"
    below = facts.max_depth - 1
    return f"`rlm_query` may start child runs, {below} level{'s' if below != 1 else ''} below this"


def limits(facts: RunFacts) -> list[str]:
    """The limits in force, one line each (the first message's list and `{limits}`)."""
    set_budgets = budgets(facts)
    return [
        f"- Iterations: {facts.max_iterations:,} (a reply and the code it runs is one).",
        f"- Cell time: {seconds(facts.cell_timeout)} s of a cell's own compute; time waiting "
        "on sub-calls does not count.",
        f"- Output: the first {facts.output_limit:,} characters a cell prints are shown.",
        f"- Sub-call size: about {facts.subcall_chars:,} characters per prompt "
        f"({facts.worker_model}); a longer prompt is refused.",
        "- Budgets: " + ("; ".join(set_budgets) if set_budgets else "none set") + ".",
        f"- Depth: {depth(facts)}.",
    ]

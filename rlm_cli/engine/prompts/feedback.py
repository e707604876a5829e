"""What the root model is told after each turn: the outputs of its code with what is left of
its iterations and budgets, a reply with no code, a refused fan-out, and the last turn."""

from __future__ import annotations

from rlm_cli.engine.prompts.facts import RunFacts

NO_CODE = (
    "Your reply had no ```repl code block. Write one to explore `context`, or call FINAL(...) / "
    "FINAL_VAR(...) in one when you know the answer."
)

LIMIT_REACHED = {
    "max_iterations": "You have used all {iterations} iterations.",
    "max_cost": "The cost budget is used up.",
    "max_tokens": "The token budget is used up.",
    "max_subcalls": "The sub-call budget is used up: no more llm_query calls can be made.",
    "timeout": "The time budget is used up.",
}
LAST_TURN = (
    " This is your last turn: write one ```repl block that calls FINAL(...) or FINAL_VAR(...) "
    "with the best answer you have, making no more sub-calls."
)
# How Budget.remaining() names each budget, in the order the feedback lists them.
BUDGET_ORDER = ("max_cost", "max_tokens", "max_subcalls", "timeout")


def last_turn(limit: str, iterations: int) -> str:
    """The message that asks for a best-effort answer once `limit` is reached."""
    reason = LIMIT_REACHED.get(limit, "A limit is reached.").format(iterations=iterations)
    return reason + LAST_TURN


REFUSED_NOTE = (
    "[Budget: {refused:,} of the {size:,} sub-call(s) of one llm_query call were not sent: the "
    '{limit} budget could not cover them. Their slots hold an error string ("Error: llm_query '
    'failed: not sent: ..."), not a reply. The whole fan-out would have cost about {whole} at '
    "the cost of the calls sent, {most} at most; {left} is left. Work with the replies you have, "
    "or send fewer or smaller calls.]"
)


def refused_note(*, refused: int, size: int, limit: str, whole: str, most: str, left: str) -> str:
    """Told to the root after a cell in which a budget refused part of a fan-out."""
    return REFUSED_NOTE.format(
        refused=refused, size=size, limit=limit, whole=whole, most=most, left=left
    )


def cell_feedback(
    outputs: list[str], iteration: int, facts: RunFacts, budgets_left: dict[str, str]
) -> str:
    """The user message that carries the outputs of one turn's code back to the root model,
    with what is left of its iterations and of each budget that is set (`Budget.remaining`)."""
    parts = []
    for index, output in enumerate(outputs, start=1):
        label = f"Output of code block {index}" if len(outputs) > 1 else "Output"
        parts.append(f"{label}:\n{output if output.strip() else '(no output)'}")
    max_iterations = facts.max_iterations
    left = max_iterations - iteration
    status = f"[Iteration {iteration} of {max_iterations}; {left} left"
    named = [budgets_left[name] for name in BUDGET_ORDER if name in budgets_left]
    named += [text for name, text in budgets_left.items() if name not in BUDGET_ORDER]
    if named:
        status += ". Budgets left: " + " · ".join(named)
    parts.append(status + ".]")
    return "\n\n".join(parts)

"""What the host tells the model's code about the sandbox: the notes a cell's output gets when
the cell was stopped or its worker replaced, and the text a failed sub-call returns.

The model reads these and acts on them (recompute lost variables, split the work, retry a call),
so each is written once, here. The "Error: <helper> failed: ..." form is the one the system prompt
teaches the model to look for in a sub-call's reply.
"""

from __future__ import annotations


def stopped_at_time_limit(timeout: float) -> str:
    """Appended to the output of a cell that was interrupted at its time limit (its worker and
    variables live on)."""
    return f"\n[The cell was stopped: it ran past the {timeout:g} s time limit.]"


def did_not_stop(timeout: float) -> str:
    """Why a cell's worker was replaced when the cell ignored its interrupt (see `restarted`)."""
    return f"The cell ran past the {timeout:g} s time limit and did not stop."


def stopped_for(violation: str) -> str:
    """Why the host killed the worker: `violation` completes "it ..." ("broke the protocol")."""
    return f"The REPL worker was stopped: it {violation}."


def died(code: int | None, last_words: str) -> str:
    """The worker died by itself while running the cell; `last_words` is its stderr's end."""
    said = f" Its last words: {last_words}" if last_words else ""
    return f"The REPL worker process died (exit code {code}) while running the cell.{said}"


def restarted(why: str) -> str:
    """The whole output of a cell whose worker was replaced: `why`, then what was lost."""
    return (
        f"{why} The REPL worker was restarted: `context` is loaded again, but every variable "
        "you defined is lost. Recompute what you need, in smaller steps."
    )


def call_failed(detail: str, helper: str = "llm_query") -> str:
    """The reply a sub-call gets in place of an answer when it failed: returned, not raised, so
    one failure among a batch leaves the other answers usable."""
    return f"Error: {helper} failed: {detail}"

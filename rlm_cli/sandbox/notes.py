"""What the host tells the model's code about the sandbox: the notes a cell's output gets when
the cell was stopped or its worker replaced, and the text a failed sub-call returns.

The model reads these and acts on them (recompute lost variables, split the work, retry a call),
so each is written once, here. The "Error: <helper> failed: ..." form is the one the system prompt
teaches the model to look for in a sub-call's reply.
"""

from __future__ import annotations


def cell_time(timeout: float) -> str:
    """Why a cell was stopped at its own time limit (`--cell-timeout`): completes "it ..."."""
    return (
        f"ran past the {timeout:g} s limit on a cell's own time (time spent waiting on "
        "sub-calls does not count)"
    )


def run_time(seconds: float) -> str:
    """Why a cell was stopped at the run's time limit (`--timeout`): completes "it ..."."""
    return f"reached the run's time limit ({seconds:,.1f} s were left when it started)"


def stopped(why: str) -> str:
    """Appended to the output of a cell interrupted at a time limit (its worker and variables
    live on); `why` is `cell_time` or `run_time`."""
    return f"\n[The cell was stopped: it {why}.]"


def did_not_stop(why: str) -> str:
    """Why a cell's worker was replaced when the cell ignored its interrupt (see `restarted`)."""
    return f"The cell was interrupted (it {why}) and did not stop."


def fanout_stopped(kept: int, asked: int) -> str:
    """Appended to the output of a cell stopped while sub-calls were in flight ("" if none)."""
    if not asked:
        return ""
    lost = asked - kept
    return (
        f"\n[{lost:,} of the {asked:,} sub-calls in flight had not replied when the cell was "
        f'stopped: they were cancelled, and their slots hold an error string ("Error: '
        f'llm_query failed: stopped ..."). The {kept:,} replies that had come back are kept in '
        "the list the call returned, if the cell stored it.]"
    )


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

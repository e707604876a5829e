"""The tree views' run model: the one run model (`rlm_cli.runmodel`), kept the way a view needs.

Both the live view and `rlm trace show` feed events to `RunTree.apply`, the same fold the trace
exports read, so a trace renders exactly as the run looked. Nothing here draws.

Text from the run (prose, code, outputs, prompts, replies, errors, the answer) is attacker-
controlled, so the retention passes it through `terminal_safe` as it comes in: once per event
rather than on every redraw, and no view can forget it. Ids (run ids) are kept as they are.
"""

from __future__ import annotations

from rlm_cli.runmodel import BATCH_SHOWN, Batch, Cell, Iteration, Retention, Run, Subcall, Totals
from rlm_cli.ui.safe import terminal_safe

__all__ = ["BATCH_SHOWN", "Batch", "Cell", "Iteration", "Run", "RunTree", "Subcall", "Totals"]

# A live view keeps this much of each sub-call's prompt and reply: thousands of large prompts
# must not pile up in memory for the sake of a 60-character preview.
PREVIEW_KEPT = 1_000

LIVE = Retention(text_chars=PREVIEW_KEPT, batch_items=BATCH_SHOWN, clean=terminal_safe)
# `rlm trace show`: every word of the trace, still made safe for the terminal.
SHOWN = Retention(clean=terminal_safe)


class RunTree(Run):
    """A run folded for a tree view: previews and the shown batch items (`full_text`: all)."""

    def __init__(self, *, full_text: bool = False) -> None:
        super().__init__(retention=SHOWN if full_text else LIVE)

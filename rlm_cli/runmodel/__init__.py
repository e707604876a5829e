"""One typed model of a run, folded from its events, that every view reads (see `run`)."""

from rlm_cli.runmodel.nodes import (
    BATCH_SHOWN,
    KEEP_ALL,
    Batch,
    Cell,
    FinalRecord,
    Iteration,
    Retention,
    RetryRecord,
    RootCall,
    Subcall,
    Totals,
)
from rlm_cli.runmodel.run import Run
from rlm_cli.runmodel.tally import TOKEN_KEYS, Tally, add_cost

__all__ = [
    "BATCH_SHOWN",
    "KEEP_ALL",
    "TOKEN_KEYS",
    "Batch",
    "Cell",
    "FinalRecord",
    "Iteration",
    "Retention",
    "RetryRecord",
    "RootCall",
    "Run",
    "Subcall",
    "Tally",
    "Totals",
    "add_cost",
]

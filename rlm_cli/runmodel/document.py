"""The run model as the trajectory's RUN node (`rlm trace export --format json`, version 1).

The shape is described in `rlm_cli.trace.reader`; this is its one producer. It reads a run
folded with `KEEP_ALL`: a run folded for a live view keeps only part of its batches and text.
"""

from __future__ import annotations

from typing import Any

from rlm_cli.runmodel.nodes import Batch, Cell, Iteration, Subcall
from rlm_cli.runmodel.run import Run
from rlm_cli.runmodel.tally import Tally, tally_of

Doc = dict[str, Any]


def run_document(run: Run) -> Doc:
    """The RUN node of `run` and, nested in it, of every run below it."""
    finished = run.finished
    iterations = [
        _iteration(node, last=index + 1 == len(run.iterations), over=finished is not None)
        for index, node in enumerate(run.iterations)
    ]
    start_ts = run.started if run.has_start else run.first_ts
    end_ts = finished.ts if finished is not None else run.last_ts
    if finished is not None:
        elapsed: float | None = finished.elapsed_s
    else:
        elapsed = end_ts - start_ts if end_ts is not None and start_ts is not None else None
    summed = finished is not None and bool(finished.usage)
    return {
        "run_id": run.run_id or None,
        "parent_run_id": run.parent_run_id,
        "depth": run.depth,
        "parent_cell": run.parent_cell,
        "question": _known(run, run.question),
        "root_model": _known(run, run.root_model),
        "sub_model": _known(run, run.sub_model),
        "context_meta": run.context_meta if run.has_start else None,
        "status": run.status if run.status is not None else "incomplete",
        "answer": run.answer,
        "final_source": run.answer_source,
        "error": run.error,
        "start_ts": start_ts,
        "end_ts": end_ts,
        "elapsed_s": elapsed,
        "counts": {
            "iterations": len([n for n in run.iterations if n.iteration > 0]),
            "cells": run.cell_count,
            "subcalls": run.subcalls_started,
            "retries": run.retries,
        },
        # The summary's count covers the run's child runs too; without one, its own failures.
        "subcalls_failed": finished.subcalls_failed
        if finished is not None and (finished.subcalls_failed or finished.failures)
        else run.subcalls_failed,
        "failures": dict(run.failures) if finished is not None else {},
        "usage": finished.usage if finished is not None and summed else _ledger(run),
        "usage_source": "summary" if summed else "events",
        "iterations": iterations,
        "children": [run_document(child) for child in run.children],
    }


def _known(run: Run, value: str) -> str | None:
    # A run that failed before it started has no run_started line: what the header gave, or null.
    return value if run.has_start or value else None


def _ledger(run: Run) -> Doc:
    """The run's usage in the shape of the run_finished summary, from the calls themselves."""
    total = tally_of(list(run.by_model.values())).to_json()
    del total["calls"]  # the summary counts calls by model only
    return {**total, "by_model": {model: t.to_json() for model, t in run.by_model.items()}}


def _iteration(node: Iteration, *, last: bool, over: bool) -> Doc:
    root = node.root
    sub = node.sub_tally()
    total = Tally()
    if root is not None:
        total.add(root.tally)
    total.add(sub)
    end_ts = node.end_ts
    return {
        "iteration": node.iteration,
        "max_iterations": node.max_iterations,
        "last_turn": node.last_turn,
        # An iteration is over once the next one starts or the run finishes.
        "status": "unfinished" if last and not over else "complete",
        "start_ts": node.started,
        "end_ts": end_ts,
        "elapsed_s": round(end_ts - node.started, 6),
        "root": None
        if root is None
        else {
            "model": root.model,
            "text": root.text,
            "code_blocks": root.code_blocks,
            "usage": root.tally.to_json(),
            "start_ts": root.finished_at - root.elapsed_s,
            "end_ts": root.finished_at,
            "elapsed_s": root.elapsed_s,
        },
        "cells": [_cell(cell) for cell in node.cells],
        "final": None
        if node.final is None
        else {"answer": node.final.answer, "source": node.final.source, "ts": node.final.ts},
        "retries": [
            {
                "purpose": r.purpose,
                "model": r.model,
                "attempt": r.attempt,
                "delay_s": r.delay_s,
                "reason": r.reason,
                "ts": r.ts,
            }
            for r in node.retries
        ],
        "subcalls": node.subcalls,
        "sub_usage": sub.to_json(),
        "usage": total.to_json(),
    }


def _cell(cell: Cell) -> Doc:
    done = cell.done
    return {
        "cell": cell.cell,
        "iteration": cell.iteration,
        "code": cell.code,
        "status": cell.status,
        "output": cell.output if done else None,
        "output_chars": cell.output_chars if done else None,
        "error": cell.error if done else None,
        "timed_out": cell.timed_out,
        "worker_restarted": cell.worker_restarted,
        "start_ts": cell.started,
        "end_ts": cell.finished_at,
        "elapsed_s": cell.elapsed_s,
        "batches": [_batch(b) for b in sorted(cell.batches(), key=lambda b: b.batch_id)],
        "subcalls": [_subcall(call) for call in cell.subcalls()],
        "usage": cell.tally().to_json(),
        "children": [run_document(child) for child in cell.runs()],
    }


def _batch(batch: Batch) -> Doc:
    return {
        "batch_id": batch.batch_id,
        "size": batch.size,
        "done": batch.done,
        "failed": batch.failed,
    }


def _subcall(call: Subcall) -> Doc:
    return {
        "subcall_id": call.subcall_id,
        "batch_id": call.batch_id,
        "batch_size": call.batch_size,
        "model": call.model,
        "prompt": call.shortened if call.shortened is not None else call.prompt,
        "prompt_chars": call.prompt_chars,
        "prompt_shortened": call.shortened is not None,
        "reply": call.reply if call.done else None,
        "error": call.error,
        "status": call.status,
        "usage": call.tally.to_json(),
        "start_ts": call.started,
        "end_ts": call.finished_at,
        "elapsed_s": call.elapsed_s,
    }

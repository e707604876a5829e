"""The trace reader: a trace file back into typed events, and the nested trajectory document.

`load_trace(path)` reads a trace written by `TraceWriter`: finished, failed, or partial (the process
was killed, so there is no `run_finished` line, and the last line may be cut off mid-write; that
line is dropped and `Trace.truncated` says so). A path that cannot be read, or a file that is not
an rlm trace, raises `UsageError` with one line naming the path.

`fold_trace(trace)` folds its events into the run model (`rlm_cli.runmodel`: the fold the live view
makes too), and `trajectory(trace)` is that model as one JSON-ready document (the `rlm trace export
--format json` output, written by `rlm_cli.runmodel.document`). Its shape, version 1 (fields may
be added, never renamed):

    {
      "trajectory_version": 1,
      "trace": {"path", "format_version", "rlm_version", "started_at",
                "complete",        # the main run's run_finished line is there
                "truncated",       # the last line was cut mid-write and dropped
                "unknown_lines"},  # lines of event types this rlm does not know (newer traces)
      "question", "settings", "inputs",          # from the header
      "run": RUN
    }

    RUN = {
      "run_id", "parent_run_id", "depth", "parent_cell",   # parent_cell: the cell that started it
      "question", "root_model", "sub_model", "context_meta",
      "status",            # "ok", "error", "max_iterations", "interrupted"; "incomplete" when the
                           # trace has no run_finished for it
      "answer", "final_source", "error",
      "start_ts", "end_ts", "elapsed_s",
      "counts": {"iterations", "cells", "subcalls", "retries"},
      "subcalls_failed",   # sub-calls that failed, this run's and its child runs' (the summary's;
                           # without one, this run's failed calls in the events)
      "failures",          # {kind: count} from the summary ({} without one)
      "usage": LEDGER,     # the run_finished summary when there is one, else summed from events
      "usage_source": "summary" | "events",
      "iterations": [ITERATION],
      "children": [RUN]    # child runs not tied to any cell of this run
    }

    ITERATION = {
      "iteration", "max_iterations", "last_turn",
      "status": "complete" | "unfinished",
      "start_ts", "end_ts", "elapsed_s",
      "root": null | {"model", "text", "code_blocks", "usage": USAGE,
                      "start_ts", "end_ts", "elapsed_s"},
      "cells": [CELL],
      "final": null | {"answer", "source", "ts"},
      "retries": [{"purpose", "model", "attempt", "delay_s", "reason", "ts"}],
      "subcalls": N,
      "sub_usage": USAGE,  # the sub-calls of this iteration's cells
      "usage": USAGE       # root reply + sub_usage
    }

    CELL = {
      "cell", "iteration", "code",
      "status": "ok" | "error" | "timed_out" | "unfinished",
      "output", "output_chars", "error", "timed_out", "worker_restarted",
      "start_ts", "end_ts", "elapsed_s",
      "batches": [{"batch_id", "size", "done", "failed"}],
      "subcalls": [SUBCALL],   # in sub-call id order
      "usage": USAGE,          # its sub-calls
      "children": [RUN]        # child runs started from this cell
    }

    SUBCALL = {
      "subcall_id", "batch_id", "batch_size", "model",
      "prompt",            # the text, or {"head", "tail", "length", "sha256"} when shortened
      "prompt_chars", "prompt_shortened",
      "reply", "error",
      "status": "ok" | "error" | "unfinished",
      "usage": USAGE, "start_ts", "end_ts", "elapsed_s"
    }

    USAGE = {"calls", "input_tokens", "output_tokens", "cached_input_tokens",
             "cache_write_tokens", "cost_usd"}
    LEDGER = {"input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
              "cost_usd", "by_model": {MODEL: USAGE}}

Times are Unix seconds (`*_ts`) and durations in seconds; a time that is not known (a cell still
running when the process died) is null. Usage counts completed calls only, as the run's own ledger
does, so the sub-calls' usage adds up to the summary's. `cost_usd` is null when unknown, never 0.
A child run's usage stays in its own RUN node; it is not added to the parent's iterations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlm_cli.errors import UsageError
from rlm_cli.events import AnyEvent, RunFinished, RunStarted, event_from_json
from rlm_cli.runmodel import KEEP_ALL, Retention, Run
from rlm_cli.runmodel.document import Doc, run_document
from rlm_cli.trace.writer import FORMAT_VERSION

__all__ = ["Doc", "Trace", "fold_trace", "iter_runs", "iter_subcalls", "load_trace", "trajectory"]

TRAJECTORY_VERSION = 1


@dataclass
class Trace:
    """A trace file as read: its header line and its events, in file order."""

    path: str
    header: dict[str, Any]
    events: list[AnyEvent]
    truncated: bool = False
    unknown_lines: int = 0

    @property
    def question(self) -> str:
        return str(self.header.get("question", ""))

    @property
    def main_run_id(self) -> str | None:
        """The run the trace was written for: the first one that has no parent."""
        for event in self.events:
            if isinstance(event, RunStarted) and event.parent_run_id is None:
                return event.run_id
        for event in self.events:
            return event.run_id
        return None

    @property
    def complete(self) -> bool:
        """Whether the main run's summary line is there (the run ended, however it ended)."""
        main = self.main_run_id
        return any(isinstance(e, RunFinished) and e.run_id == main for e in self.events)


def load_trace(path: str | Path) -> Trace:
    """Read a trace file. Raises UsageError (one line, naming the path) if it is not one."""
    name = str(path)
    try:
        with open(path, "rb") as file:
            # Bytes, not text: a write cut by SIGKILL may end inside a multi-byte character.
            lines = file.read().split(b"\n")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"{name}: cannot read the trace ({reason})") from None
    # A complete file ends with a newline, leaving an empty last piece; anything else there is a
    # line the writer did not finish.
    last = lines.pop()
    records: list[tuple[int, dict[str, Any]]] = []
    truncated = False
    for number, raw in enumerate(lines, start=1):
        if raw.strip():
            records.append((number, _parse(name, number, raw)))
    if last.strip():
        try:
            records.append((len(lines) + 1, _parse(name, len(lines) + 1, last)))
        except UsageError:
            truncated = True
    if not records or records[0][1].get("type") != "trace_header":
        raise UsageError(f"{name}: not an rlm trace (the first line is not a trace header)")
    header = records[0][1]
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UsageError(
            f"{name}: trace format version {version!r} is not one this rlm reads "
            f"(version {FORMAT_VERSION} or older); upgrade rlm"
        )
    trace = Trace(path=name, header=header, events=[], truncated=truncated)
    for number, data in records[1:]:
        try:
            event = event_from_json(data)
        except TypeError:
            # A known type missing a required field: not written by rlm.
            raise UsageError(
                f"{name}: line {number} is not a valid {data.get('type')} event"
            ) from None
        if event is None:
            trace.unknown_lines += 1
            continue
        trace.events.append(event)
    return trace


def _parse(name: str, number: int, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"{name}: not an rlm trace (line {number} is not JSON)") from None
    if not isinstance(data, dict):
        raise UsageError(f"{name}: not an rlm trace (line {number} is not a JSON object)")
    return data


# --- the trajectory document ---------------------------------------------------------------------


def fold_trace(trace: Trace, retention: Retention = KEEP_ALL) -> Run:
    """The trace's events folded into the run model (the same fold the live view makes), with
    what only the header knows filled in for a run that failed before it started."""
    run = Run(retention=retention)
    for event in trace.events:  # child runs' events find their place in the tree
        run.apply(event)
    if not run.has_start:
        header, clean = trace.header, retention.clean
        settings = header.get("settings") or {}
        # A bad setting is recorded as given, before the model names are worked out.
        for name, value in (
            ("question", header.get("question")),
            ("root_model", settings.get("root_model") or settings.get("model")),
            ("sub_model", settings.get("worker_model") or settings.get("sub_model")),
        ):
            if value is not None:
                setattr(run, name, clean(str(value)))
    return run


def trajectory(trace: Trace) -> Doc:
    """The nested document described in this module's docstring."""
    main = run_document(fold_trace(trace))
    if main["start_ts"] is None:  # killed before the run started: the header is all there is
        main["start_ts"] = trace.header.get("started_at")
    return {
        "trajectory_version": TRAJECTORY_VERSION,
        "trace": {
            "path": trace.path,
            "format_version": trace.header.get("format_version"),
            "rlm_version": trace.header.get("rlm_version"),
            "started_at": trace.header.get("started_at"),
            "complete": trace.complete,
            "truncated": trace.truncated,
            "unknown_lines": trace.unknown_lines,
        },
        "question": trace.header.get("question"),
        "settings": trace.header.get("settings") or {},
        "inputs": trace.header.get("inputs"),
        "run": main,
    }


def iter_runs(run: Doc) -> Iterable[Doc]:
    """A run and all its descendants, depth first (children of cells before the run's own)."""
    yield run
    for iteration in run["iterations"]:
        for cell in iteration["cells"]:
            for child in cell["children"]:
                yield from iter_runs(child)
    for child in run["children"]:
        yield from iter_runs(child)


def iter_subcalls(run: Doc) -> Iterable[Doc]:
    """Every sub-call of a run and its child runs."""
    for each in iter_runs(run):
        for iteration in each["iterations"]:
            for cell in iteration["cells"]:
                yield from cell["subcalls"]

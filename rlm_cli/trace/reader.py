"""The trace reader: a trace file back into typed events, and the nested trajectory document.

`load_trace(path)` reads a trace written by `TraceWriter`: finished, failed, or partial (the process
was killed, so there is no `run_finished` line, and the last line may be cut off mid-write; that
line is dropped and `Trace.truncated` says so). A path that cannot be read, or a file that is not
an rlm trace, raises `UsageError` with one line naming the path.

`trajectory(trace)` nests the events into one JSON-ready document (the `rlm trace export --format
json` output). Its shape, version 1 (fields may be added, never renamed):

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
      "failures",          # {kind: count} from the summary ({} without one, or in old traces)
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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_cli.errors import UsageError
from rlm_cli.events import (
    CellFinished,
    CellStarted,
    Event,
    FinalAnswer,
    IterationStarted,
    Retry,
    RootReply,
    RunFinished,
    RunStarted,
    SubcallFinished,
    SubcallStarted,
    event_from_json,
)
from rlm_cli.trace.writer import FORMAT_VERSION

TRAJECTORY_VERSION = 1
TOKEN_KEYS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens")

Doc = dict[str, Any]


@dataclass
class Trace:
    """A trace file as read: its header line and its events, in file order."""

    path: str
    header: dict[str, Any]
    events: list[Event]
    # The JSON of each event line, in step with `events`: fields this rlm's events do not have
    # (from a newer writer) are kept here.
    records: list[dict[str, Any]] = field(default_factory=list)
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
        trace.records.append(data)
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


def trajectory(trace: Trace) -> Doc:
    """The nested document described in this module's docstring."""
    summaries = {e.run_id: e for e in trace.events if isinstance(e, RunFinished)}
    builders: dict[str, _RunBuilder] = {}
    for event, record in zip(trace.events, trace.records, strict=True):
        builder = builders.get(event.run_id)
        if builder is None:
            builder = builders[event.run_id] = _RunBuilder(event.run_id)
        builder.add(event, record)
    runs = {run_id: b.build(summaries.get(run_id)) for run_id, b in builders.items()}

    main_id = trace.main_run_id
    if main_id is None:  # killed before the run started: the header is all there is
        main = _empty_run(trace.header)
    else:
        main = runs[main_id]
        _fill_from_header(main, trace.header)
    for run_id, run in runs.items():
        if run_id != main_id:
            _attach(run, runs, main)
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


def usage_node(
    calls: int = 0, tokens: Mapping[str, Any] | None = None, cost_usd: float | None = 0.0
) -> Doc:
    """A USAGE node: `calls` completed calls with these tokens and cost."""
    node: Doc = {"calls": calls}
    for key in TOKEN_KEYS:
        node[key] = int((tokens or {}).get(key, 0) or 0)
    node["cost_usd"] = cost_usd
    return node


def add_usage(total: Doc, part: Mapping[str, Any]) -> None:
    """Add one USAGE node into another; an unknown cost makes the sum unknown."""
    total["calls"] += part.get("calls", 0)
    for key in TOKEN_KEYS:
        total[key] += int(part.get(key, 0) or 0)
    cost, more = total["cost_usd"], part.get("cost_usd")
    total["cost_usd"] = None if cost is None or more is None else cost + more


class _RunBuilder:
    """Collects one run's events (in file order) into its RUN node."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.started: RunStarted | None = None
        self.started_record: dict[str, Any] = {}
        self.iterations: dict[int, Doc] = {}
        self.cells: dict[int, Doc] = {}
        self.subcalls: dict[int, Doc] = {}
        self.final: FinalAnswer | None = None
        self.retries = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def add(self, event: Event, record: dict[str, Any]) -> None:
        if self.first_ts is None:
            self.first_ts = event.ts
        self.last_ts = event.ts if self.last_ts is None else max(self.last_ts, event.ts)
        if isinstance(event, RunStarted):
            self.started, self.started_record = event, record
        elif isinstance(event, IterationStarted):
            node = self._iteration(event.iteration, event.ts)
            node["max_iterations"] = event.max_iterations
            node["last_turn"] = event.last_turn
        elif isinstance(event, RootReply):
            node = self._iteration(event.iteration, event.ts)
            node["root"] = {
                "model": event.model,
                "text": event.text,
                "code_blocks": event.code_blocks,
                "usage": usage_node(1, event.usage, _cost(record)),
                "start_ts": event.ts - event.elapsed_s,
                "end_ts": event.ts,
                "elapsed_s": event.elapsed_s,
            }
            self._touch(node, event.ts)
        elif isinstance(event, CellStarted):
            cell = self._cell(event.cell, event.iteration, event.ts)
            cell["code"] = event.code
            cell["start_ts"] = event.ts
        elif isinstance(event, CellFinished):
            cell = self._cell(event.cell, event.iteration, event.ts)
            cell.update(
                output=event.output,
                output_chars=event.output_chars,
                error=event.error,
                timed_out=event.timed_out,
                worker_restarted=event.worker_restarted,
                end_ts=event.ts,
                elapsed_s=event.elapsed_s,
                status="timed_out" if event.timed_out else ("error" if event.error else "ok"),
            )
        elif isinstance(event, SubcallStarted):
            call = self._subcall(event.subcall_id, event.cell, event.ts)
            prompt: Any = event.prompt  # a str, or the writer's shortened form (a dict)
            shortened = isinstance(prompt, dict)
            call.update(
                model=event.model,
                prompt=prompt,
                prompt_chars=int(prompt.get("length", 0)) if shortened else len(prompt),
                prompt_shortened=shortened,
                batch_id=event.batch_id,
                batch_size=event.batch_size,
                start_ts=event.ts,
            )
        elif isinstance(event, SubcallFinished):
            call = self._subcall(event.subcall_id, event.cell, event.ts)
            failed = event.error is not None
            call.update(
                model=event.model,
                reply=event.reply,
                error=event.error,
                status="error" if failed else "ok",
                # A failed call is not in the run's ledger: nothing was billed for it.
                usage=usage_node(0, None, 0.0)
                if failed
                else usage_node(1, event.usage, _cost(record)),
                end_ts=event.ts,
                elapsed_s=event.elapsed_s,
            )
            if call["batch_id"] is None:
                call["batch_id"] = event.batch_id
            if call["start_ts"] is None:
                call["start_ts"] = event.ts - event.elapsed_s
        elif isinstance(event, Retry):
            self.retries += 1
            node = self._current_iteration(event.ts)
            node["retries"].append(
                {
                    "purpose": event.purpose,
                    "model": event.model,
                    "attempt": event.attempt,
                    "delay_s": event.delay_s,
                    "reason": event.reason,
                    "ts": event.ts,
                }
            )
        elif isinstance(event, FinalAnswer):
            self.final = event
            node = self._iteration(event.iteration, event.ts)
            node["final"] = {"answer": event.answer, "source": event.source, "ts": event.ts}
            self._touch(node, event.ts)

    def _iteration(self, number: int, ts: float) -> Doc:
        node = self.iterations.get(number)
        if node is None:
            node = self.iterations[number] = {
                "iteration": number,
                "max_iterations": None,
                "last_turn": False,
                "status": "complete",
                "start_ts": ts,
                "end_ts": ts,
                "elapsed_s": 0.0,
                "root": None,
                "cells": [],
                "final": None,
                "retries": [],
                "subcalls": 0,
                "sub_usage": usage_node(),
                "usage": usage_node(),
            }
        return node

    def _current_iteration(self, ts: float) -> Doc:
        if self.iterations:
            return self.iterations[max(self.iterations)]
        return self._iteration(0, ts)  # before any iteration (cannot happen with this engine)

    def _touch(self, iteration: Doc, ts: float) -> None:
        iteration["end_ts"] = max(iteration["end_ts"], ts)

    def _cell(self, number: int, iteration: int, ts: float) -> Doc:
        cell = self.cells.get(number)
        if cell is None:
            cell = self.cells[number] = {
                "cell": number,
                "iteration": iteration,
                "code": "",
                "status": "unfinished",
                "output": None,
                "output_chars": None,
                "error": None,
                "timed_out": False,
                "worker_restarted": False,
                "start_ts": ts,
                "end_ts": None,
                "elapsed_s": None,
                "batches": [],
                "subcalls": [],
                "usage": usage_node(),
                "children": [],
            }
            self._iteration(iteration, ts)["cells"].append(cell)
        self._touch(self.iterations[cell["iteration"]], ts)
        return cell

    def _subcall(self, subcall_id: int, cell: int, ts: float) -> Doc:
        call = self.subcalls.get(subcall_id)
        if call is None:
            iteration = (
                self.cells[cell]["iteration"]
                if cell in self.cells
                else self._current_iteration(ts)["iteration"]
            )
            call = self.subcalls[subcall_id] = {
                "subcall_id": subcall_id,
                "batch_id": None,
                "batch_size": 1,
                "model": None,
                "prompt": None,
                "prompt_chars": None,
                "prompt_shortened": False,
                "reply": None,
                "error": None,
                "status": "unfinished",
                "usage": usage_node(),
                "start_ts": None,
                "end_ts": None,
                "elapsed_s": None,
            }
            self._cell(cell, iteration, ts)["subcalls"].append(call)
        elif cell in self.cells:
            self._touch(self.iterations[self.cells[cell]["iteration"]], ts)
        return call

    def build(self, summary: RunFinished | None) -> Doc:
        started = self.started
        iterations = [self.iterations[k] for k in sorted(self.iterations)]
        for index, node in enumerate(iterations):
            # An iteration is over once the next one starts or the run finishes.
            if index + 1 == len(iterations) and summary is None:
                node["status"] = "unfinished"
            for cell in node["cells"]:
                cell["subcalls"].sort(key=lambda c: c["subcall_id"])
                if cell["end_ts"] is not None:
                    self._touch(node, cell["end_ts"])
        if summary is not None:
            _fill_costs(iterations, summary.usage)
        for node in iterations:
            _roll_up(node)
        end_ts = summary.ts if summary is not None else self.last_ts
        start_ts = started.ts if started is not None else self.first_ts
        elapsed = (
            summary.elapsed_s
            if summary is not None
            else (end_ts - start_ts if end_ts is not None and start_ts is not None else None)
        )
        events_usage = _ledger(iterations)
        parent_cell = self.started_record.get("parent_cell")
        return {
            "run_id": self.run_id or None,
            "parent_run_id": started.parent_run_id if started else None,
            "depth": started.depth if started else 0,
            "parent_cell": parent_cell if isinstance(parent_cell, int) else None,
            "question": started.question if started else None,
            "root_model": started.root_model if started else None,
            "sub_model": started.sub_model if started else None,
            "context_meta": started.context_meta if started else None,
            "status": summary.status if summary is not None else "incomplete",
            "answer": summary.answer
            if summary is not None
            else (self.final.answer if self.final else None),
            "final_source": self.final.source if self.final else None,
            "error": summary.error if summary is not None else None,
            "start_ts": start_ts,
            "end_ts": end_ts,
            "elapsed_s": elapsed,
            "counts": {
                "iterations": len([n for n in iterations if n["iteration"] > 0]),
                "cells": len(self.cells),
                "subcalls": len(self.subcalls),
                "retries": self.retries,
            },
            "subcalls_failed": summary.subcalls_failed
            if summary is not None and (summary.subcalls_failed or summary.failures)
            else sum(call["status"] == "error" for call in self.subcalls.values()),
            "failures": dict(summary.failures) if summary is not None else {},
            "usage": summary.usage if summary is not None and summary.usage else events_usage,
            "usage_source": "summary" if summary is not None and summary.usage else "events",
            "iterations": iterations,
            "children": [],
        }


def _cost(record: Mapping[str, Any]) -> float | None:
    # Read from the line, not the event: traces from before events carried a cost have none,
    # and `_fill_costs` then fills in what the run summary makes certain.
    cost = record.get("cost_usd")
    return float(cost) if isinstance(cost, int | float) else None


def _fill_costs(iterations: list[Doc], summary_usage: Mapping[str, Any]) -> None:
    """Calls whose event carried no cost (older traces) cost 0 when the summary says their model
    cost 0 in all; otherwise their cost stays unknown."""
    by_model = summary_usage.get("by_model") or {}
    free = {model for model, totals in by_model.items() if totals.get("cost_usd") == 0}
    for node in iterations:
        root = node["root"]
        if root is not None and root["usage"]["cost_usd"] is None and root["model"] in free:
            root["usage"]["cost_usd"] = 0.0
        for cell in node["cells"]:
            for call in cell["subcalls"]:
                if call["usage"]["cost_usd"] is None and call["model"] in free:
                    call["usage"]["cost_usd"] = 0.0


def _roll_up(node: Doc) -> None:
    """Sum the usage of an iteration's sub-calls into its cells and itself."""
    sub = usage_node()
    count = 0
    for cell in node["cells"]:
        cell_usage = usage_node()
        size: dict[int, int] = {}
        done: dict[int, int] = {}
        failed: dict[int, int] = {}
        for call in cell["subcalls"]:
            add_usage(cell_usage, call["usage"])
            batch = call["batch_id"]
            if batch is not None:
                size[batch] = max(size.get(batch, 0), call["batch_size"])
                done[batch] = done.get(batch, 0) + (call["status"] != "unfinished")
                failed[batch] = failed.get(batch, 0) + (call["status"] == "error")
        cell["usage"] = cell_usage
        cell["batches"] = [
            {"batch_id": b, "size": size[b], "done": done[b], "failed": failed[b]}
            for b in sorted(size)
        ]
        add_usage(sub, cell_usage)
        count += len(cell["subcalls"])
    node["subcalls"] = count
    node["sub_usage"] = sub
    total = usage_node()
    if node["root"] is not None:
        add_usage(total, node["root"]["usage"])
    add_usage(total, sub)
    node["usage"] = total
    node["elapsed_s"] = round(node["end_ts"] - node["start_ts"], 6)


def _ledger(iterations: list[Doc]) -> Doc:
    """The run's usage in the shape of the run_finished summary, from the calls themselves."""
    by_model: dict[str, Doc] = {}
    for node in iterations:
        calls = [node["root"]] if node["root"] is not None else []
        calls += [c for cell in node["cells"] for c in cell["subcalls"]]
        for call in calls:
            if call["usage"]["calls"]:
                add_usage(by_model.setdefault(call["model"], usage_node()), call["usage"])
    total = usage_node()
    for totals in by_model.values():
        add_usage(total, totals)
    del total["calls"]  # the summary counts calls by model only
    return {**total, "by_model": by_model}


def _empty_run(header: Mapping[str, Any]) -> Doc:
    run = _RunBuilder("").build(None)
    _fill_from_header(run, header)
    return run


def _fill_from_header(run: Doc, header: Mapping[str, Any]) -> None:
    """A run that failed before it started has no run_started line: take what the header has."""
    settings = header.get("settings") or {}
    if run["question"] is None:
        run["question"] = header.get("question")
    if run["root_model"] is None:
        # A bad setting is recorded as given, before the model names are worked out.
        run["root_model"] = settings.get("root_model") or settings.get("model")
    if run["sub_model"] is None:
        run["sub_model"] = settings.get("worker_model") or settings.get("sub_model")
    if run["start_ts"] is None:
        run["start_ts"] = header.get("started_at")


def _attach(run: Doc, runs: Mapping[str, Doc], main: Doc) -> None:
    """Put a child run under the cell that started it: the one its run_started names, else the
    parent's cell that was running when it started; failing both, under the parent run itself."""
    parent = runs.get(run["parent_run_id"] or "") if run["parent_run_id"] else None
    if parent is None or parent is run:
        parent = main
    cells = [cell for node in parent["iterations"] for cell in node["cells"]]
    chosen = None
    if run["parent_cell"] is not None:
        chosen = next((c for c in cells if c["cell"] == run["parent_cell"]), None)
    if chosen is None and run["start_ts"] is not None:
        ts = run["start_ts"]
        chosen = next(
            (
                c
                for c in reversed(cells)
                if c["start_ts"] is not None
                and c["start_ts"] <= ts
                and (c["end_ts"] is None or ts <= c["end_ts"])
            ),
            None,
        )
    if chosen is not None:
        run["parent_cell"] = chosen["cell"]
        chosen["children"].append(run)
    else:
        parent["children"].append(run)

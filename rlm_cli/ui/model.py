"""The run as a tree of plain data, built from events: what the tree views render.

Both the live view and `rlm trace show` feed events to `RunTree.apply`, so a trace renders
exactly as the run looked. Nothing here draws; nothing here knows about Rich.

Text from the run (prose, code, outputs, prompts, replies, errors, the answer) is attacker-
controlled, so it is passed through `terminal_safe` as it comes in: once per event rather than on
every redraw, and no view can forget it. Ids (run ids) are kept as they are, for routing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rlm_cli.events import (
    BudgetWarning,
    CellFinished,
    CellStarted,
    Event,
    FinalAnswer,
    IterationStarted,
    Retry,
    RootReply,
    RootTextDelta,
    RunFinished,
    RunStarted,
    SubcallCached,
    SubcallFinished,
    SubcallStarted,
)
from rlm_cli.ui.safe import terminal_safe

# A batch keeps this many of its slowest and failed items for display; the rest are counted.
BATCH_SHOWN = 3
PREVIEW_KEPT = 1_000


@dataclass
class Subcall:
    subcall_id: int
    model: str
    prompt: str
    started: float
    reply: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    elapsed_s: float | None = None
    error: str | None = None
    retries: int = 0
    cached: bool = False

    @property
    def done(self) -> bool:
        return self.elapsed_s is not None


@dataclass
class Batch:
    batch_id: int
    size: int
    model: str
    started: float
    started_count: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    finished_at: float | None = None
    # Only what is shown is kept, so a batch of any size costs the same to hold and to draw.
    slowest: list[Subcall] = field(default_factory=list)
    failures: list[Subcall] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return self.started_count - self.done

    def finished(self, call: Subcall) -> None:
        self.done += 1
        if call.error:
            self.failed += 1
            if len(self.failures) < BATCH_SHOWN:
                self.failures.append(call)
            return
        self.slowest.append(call)
        self.slowest.sort(key=lambda s: s.elapsed_s or 0.0, reverse=True)
        del self.slowest[BATCH_SHOWN:]


@dataclass
class Cell:
    cell: int
    code: str
    output: str = ""
    output_chars: int = 0
    elapsed_s: float | None = None
    error: bool = False
    timed_out: bool = False
    worker_restarted: bool = False
    # Sub-calls, batches and child runs, in the order they started.
    children: list[Subcall | Batch | RunTree] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.elapsed_s is not None


@dataclass
class Iteration:
    iteration: int
    last_turn: bool
    streamed: str = ""
    reply: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    elapsed_s: float | None = None
    cells: list[Cell] = field(default_factory=list)
    retries: int = 0

    @property
    def text(self) -> str:
        return self.reply if self.reply is not None else self.streamed

    @property
    def subcalls(self) -> int:
        return sum(
            child.started_count if isinstance(child, Batch) else 1
            for cell in self.cells
            for child in cell.children
            if not isinstance(child, RunTree)
        )

    @property
    def failed(self) -> int:
        """Sub-calls of this iteration that ended with an error, and child runs that ended
        without an answer: work the code asked for and did not get."""
        count = 0
        for cell in self.cells:
            for child in cell.children:
                if isinstance(child, Batch):
                    count += child.failed
                elif isinstance(child, Subcall):
                    count += child.error is not None
                else:
                    count += child.status is not None and child.answer is None
        return count

    @property
    def state(self) -> str:
        """ "error" (a cell raised), "warning" (sub-calls failed, a batch did not finish, a cell
        timed out, or the iteration never finished: the run was interrupted or stopped) or "ok"."""
        if any(c.error and not c.timed_out for c in self.cells):
            return "error"
        unfinished = self.reply is None or any(not c.done or c.timed_out for c in self.cells)
        cut = any(
            isinstance(child, Batch) and child.done < child.size
            for cell in self.cells
            for child in cell.children
        )
        return "warning" if unfinished or cut or self.failed else "ok"


@dataclass(frozen=True)
class Totals:
    subcalls_done: int
    subcalls_in_flight: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    subcalls_failed: int = 0  # of those done


@dataclass
class RunTree:
    run_id: str = ""
    question: str = ""
    root_model: str = ""
    sub_model: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    context_meta: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)
    depth: int = 0
    started: float = field(default_factory=time.time)
    iterations: list[Iteration] = field(default_factory=list)
    answer: str | None = None
    answer_source: str | None = None
    status: str | None = None
    error: str | None = None
    finished_at: float | None = None
    subcalls_done: int = 0
    subcalls_in_flight: int = 0
    subcalls_failed: int = 0  # this run's own, counted from its events
    # From run_finished: the failed sub-calls of this run and its child runs, by kind.
    failures: dict[str, int] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    # Lookups to place later events; not part of what is shown.
    _subcalls: dict[int, tuple[Cell, Subcall, Batch | None]] = field(
        default_factory=dict, repr=False
    )
    _batches: dict[int, Batch] = field(default_factory=dict, repr=False)
    # Every run of the tree by id, shared by all its RunTrees, to route child runs' events.
    _runs: dict[str, RunTree] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)
    # Keep sub-call prompts and replies whole (trace show); a live view keeps a preview, so
    # thousands of large prompts do not pile up in memory.
    full_text: bool = False

    # ----- building -----

    def apply(self, event: Event) -> None:
        """Apply an event of this run, or of any run below it (routed by run id)."""
        if not self.run_id and isinstance(event, RunStarted):
            self._start(event)
            self._runs[event.run_id] = self
            return
        if isinstance(event, RunStarted) and event.parent_run_id in self._runs:
            self._adopt(event)
            return
        target = self._runs.get(event.run_id, self)
        target._apply_own(event)

    def _adopt(self, event: RunStarted) -> None:
        """A child run (rlm_query) starts: it nests under the parent's cell that started it."""
        parent = self._runs[event.parent_run_id or ""]
        child = RunTree(_runs=self._runs, full_text=self.full_text)
        child._start(event)
        self._runs[event.run_id] = child
        cell = parent._cell(event.parent_cell) if event.parent_cell is not None else None
        if cell is not None:
            cell.children.append(child)

    def _apply_own(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, IterationStarted):
            self.iterations.append(Iteration(event.iteration, event.last_turn))
        elif isinstance(event, RootTextDelta) and self.iterations:
            # A sequence cut between deltas shows its ESC until the whole reply replaces this.
            self.iterations[-1].streamed += terminal_safe(event.text)
        elif isinstance(event, RootReply) and self.iterations:
            self._root_reply(event)
        elif isinstance(event, CellStarted) and self.iterations:
            self.iterations[-1].cells.append(Cell(event.cell, terminal_safe(event.code)))
        elif isinstance(event, CellFinished):
            self._cell_finished(event)
        elif isinstance(event, SubcallStarted):
            self._subcall_started(event)
        elif isinstance(event, SubcallFinished):
            self._subcall_finished(event)
        elif isinstance(event, Retry):
            self._retry(event)
        elif isinstance(event, SubcallCached):
            found = self._subcalls.get(event.subcall_id)
            if found is not None:
                found[1].cached = True
        elif isinstance(event, BudgetWarning):
            self.warnings.append(terminal_safe(f"{event.limit} {event.used:.0%}"))
        elif isinstance(event, FinalAnswer):
            self.answer, self.answer_source = (
                terminal_safe(event.answer),
                terminal_safe(event.source),
            )
        elif isinstance(event, RunFinished):
            self.status, self.finished_at = terminal_safe(event.status), event.ts
            self.error = None if event.error is None else terminal_safe(event.error)
            self.failures = {terminal_safe(str(k)): int(v) for k, v in event.failures.items()}
            if event.answer is not None:
                self.answer = terminal_safe(event.answer)
            # Its usage totals include child runs, which count their own: the counters built from
            # each call's event already hold this run's share.

    def _start(self, event: RunStarted) -> None:
        self.run_id, self.question = event.run_id, terminal_safe(event.question)
        self.root_model = terminal_safe(event.root_model)
        self.sub_model = terminal_safe(event.sub_model)
        self.inputs, self.context_meta, self.settings = (
            event.inputs,
            event.context_meta,
            event.settings,
        )
        self.depth, self.started = event.depth, event.ts
        self.sandbox = event.sandbox

    def _root_reply(self, event: RootReply) -> None:
        iteration = self.iterations[-1]
        iteration.reply, iteration.usage, iteration.elapsed_s = (
            terminal_safe(event.text),
            event.usage,
            event.elapsed_s,
        )
        self._count_usage(event.usage, event.cost_usd)

    def _count_usage(self, usage: dict[str, Any], cost_usd: float | None) -> None:
        self.input_tokens += int(usage.get("input_tokens", 0))
        self.output_tokens += int(usage.get("output_tokens", 0))
        if usage:  # a failed call has no usage and costs nothing
            self.cost_usd = (
                None if self.cost_usd is None or cost_usd is None else self.cost_usd + cost_usd
            )

    def _cell(self, number: int) -> Cell | None:
        for iteration in reversed(self.iterations):
            for cell in iteration.cells:
                if cell.cell == number:
                    return cell
        return None

    def _cell_finished(self, event: CellFinished) -> None:
        cell = self._cell(event.cell)
        if cell is None:
            return
        cell.output, cell.output_chars, cell.elapsed_s = (
            terminal_safe(event.output),
            event.output_chars,
            event.elapsed_s,
        )
        cell.error, cell.timed_out = event.error, event.timed_out
        cell.worker_restarted = event.worker_restarted
        for child in cell.children:  # batch items that never started end with their cell
            if isinstance(child, Batch) and child.finished_at is None:
                child.finished_at = event.ts

    def _subcall_started(self, event: SubcallStarted) -> None:
        cell = self._cell(event.cell)
        if cell is None:
            return
        raw: object = event.prompt  # a trace may hold a long prompt shortened to head/tail
        prompt = (
            raw
            if isinstance(raw, str)
            else str(raw.get("head", ""))
            if isinstance(raw, dict)
            else ""
        )
        model = terminal_safe(event.model)
        call = Subcall(event.subcall_id, model, self._kept(prompt), event.ts)
        batch = None
        if event.batch_id is not None:
            batch = self._batches.get(event.batch_id)
            if batch is None:
                batch = Batch(event.batch_id, event.batch_size, model, event.ts)
                self._batches[event.batch_id] = batch
                cell.children.append(batch)
            batch.started_count += 1
        else:
            cell.children.append(call)
        self._subcalls[event.subcall_id] = (cell, call, batch)
        self.subcalls_in_flight += 1

    def _subcall_finished(self, event: SubcallFinished) -> None:
        found = self._subcalls.get(event.subcall_id)
        if found is None:
            return
        _cell, call, batch = found
        call.reply, call.usage = self._kept(event.reply), event.usage
        call.error = None if event.error is None else terminal_safe(event.error)
        call.elapsed_s = event.elapsed_s
        self.subcalls_in_flight -= 1
        self.subcalls_done += 1
        self.subcalls_failed += call.error is not None
        self._count_usage(event.usage, event.cost_usd)
        del self._subcalls[event.subcall_id]  # only calls in flight are looked up again
        if batch is not None:
            batch.finished(call)
            if batch.done == batch.size:
                batch.finished_at = event.ts

    def _kept(self, text: str) -> str:
        return terminal_safe(text if self.full_text else text[:PREVIEW_KEPT])

    def _retry(self, event: Retry) -> None:
        if event.purpose == "root" and self.iterations:
            self.iterations[-1].retries += 1
            return
        in_flight = [call for _, call, _ in self._subcalls.values() if not call.done]
        for call in in_flight:
            if call.model == terminal_safe(event.model):  # stored made safe
                call.retries += 1
                batch = self._subcalls[call.subcall_id][2]
                if batch is not None:
                    batch.retries += 1
                return

    # ----- reading -----

    def descendants(self) -> list[RunTree]:
        """This run and every run below it."""
        found = [self]
        for iteration in self.iterations:
            for cell in iteration.cells:
                for child in cell.children:
                    if isinstance(child, RunTree):
                        found.extend(child.descendants())
        return found

    def totals(self) -> Totals:
        """Counters of the whole tree: this run and its child runs."""
        runs = self.descendants()
        costs = [r.cost_usd for r in runs]
        return Totals(
            subcalls_done=sum(r.subcalls_done for r in runs),
            subcalls_in_flight=sum(r.subcalls_in_flight for r in runs),
            input_tokens=sum(r.input_tokens for r in runs),
            output_tokens=sum(r.output_tokens for r in runs),
            cost_usd=None if None in costs else sum(c or 0.0 for c in costs),
            subcalls_failed=sum(r.subcalls_failed for r in runs),
        )

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished_at or now or time.time()
        return max(end - self.started, 0.0)

    def nearest_limit(self, now: float | None = None) -> tuple[str, float] | None:
        """The budget closest to being used up, as (name, fraction used)."""
        used: list[tuple[str, float]] = []
        totals = self.totals()
        max_iterations = self.settings.get("max_iterations")
        if max_iterations:
            used.append(("iterations", len(self.iterations) / max_iterations))
        for name, limit, value in (
            ("cost", self.settings.get("max_cost"), totals.cost_usd),
            ("tokens", self.settings.get("max_tokens"), totals.input_tokens + totals.output_tokens),
            (
                "sub-calls",
                self.settings.get("max_subcalls"),
                totals.subcalls_done + totals.subcalls_in_flight,
            ),
            ("time", self.settings.get("timeout"), self.elapsed(now)),
        ):
            if limit and value is not None:
                used.append((name, float(value) / float(limit)))
        return max(used, key=lambda pair: pair[1]) if used else None

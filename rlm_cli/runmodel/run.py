"""The run as a tree of typed data, built from events: the one fold every view reads.

The live tree, `rlm trace show` and the JSON and HTML exports all feed events to `Run.apply`, so
a trace shows exactly as the run looked and the views cannot disagree on where a child run sits,
what a retry belongs to, or what the run cost. A `Retention` says what the fold keeps.

Rules the fold makes once for everyone:

- A child run (rlm_query) sits under the parent's cell its `run_started` names; failing that, the
  parent's cell that was running when it started; failing both, under the parent run itself.
- A retry belongs to the iteration it happened in; a sub-call's retry also to the first call in
  flight to that model (and its batch).
- Usage counts completed calls (`Tally.of_call`), and an unknown cost poisons every sum it is in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, assert_never

from rlm_cli.events import (
    AnyEvent,
    BudgetWarning,
    CellFinished,
    CellStarted,
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
from rlm_cli.runmodel.nodes import (
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
from rlm_cli.runmodel.tally import Tally, add_cost


@dataclass
class Run:
    retention: Retention = KEEP_ALL
    run_id: str = ""
    parent_run_id: str | None = None
    parent_cell: int | None = None  # the parent's cell it sits under
    question: str = ""
    root_model: str = ""
    sub_model: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    context_meta: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    sandbox: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    input_summary: str | None = None  # the top run's one line on its inputs and estimate
    depth: int = 0
    has_start: bool = False  # its run_started was seen
    started: float = field(default_factory=time.time)
    first_ts: float | None = None
    last_ts: float | None = None
    iterations: list[Iteration] = field(default_factory=list)
    children: list[Run] = field(default_factory=list)  # child runs started in none of its cells
    final: FinalRecord | None = None
    # The summary's answer once the run finished (None: it has none), the final answer before.
    answer: str | None = None
    status: str | None = None
    error: str | None = None
    finished_at: float | None = None
    finished: RunFinished | None = None  # as the engine sent it (usage, elapsed_s, counts)
    # From run_finished: the failed sub-calls of this run and its child runs, by kind.
    failures: dict[str, int] = field(default_factory=dict)
    subcalls_started: int = 0
    subcalls_done: int = 0
    subcalls_in_flight: int = 0
    subcalls_failed: int = 0  # this run's own, counted from its events
    retries: int = 0
    tally: Tally = field(default_factory=Tally)  # this run's own completed calls
    by_model: dict[str, Tally] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Lookups to place later events; not part of what is shown.
    _cells: dict[int, tuple[Iteration, Cell]] = field(default_factory=dict, repr=False)
    _in_flight: dict[int, Subcall] = field(default_factory=dict, repr=False)
    _batches: dict[int, Batch] = field(default_factory=dict, repr=False)
    # Every run of the tree by id, shared by all its Runs, to route child runs' events.
    _runs: dict[str, Run] = field(default_factory=dict, repr=False)

    # ----- reading -----

    @property
    def answer_source(self) -> str | None:
        return self.final.source if self.final is not None else None

    @property
    def input_tokens(self) -> int:
        return self.tally.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.tally.output_tokens

    @property
    def cost_usd(self) -> float | None:
        return self.tally.cost_usd

    @property
    def cell_count(self) -> int:
        return len(self._cells)

    def descendants(self) -> list[Run]:
        """This run and every run below it, depth first (cells' child runs before its own)."""
        found = [self]
        for iteration in self.iterations:
            for cell in iteration.cells:
                for child in cell.runs():
                    found.extend(child.descendants())
        for child in self.children:
            found.extend(child.descendants())
        return found

    def totals(self) -> Totals:
        """Counters of the whole tree: this run and its child runs."""
        runs = self.descendants()
        cost: float | None = 0.0
        for run in runs:
            cost = add_cost(cost, run.cost_usd)
        return Totals(
            subcalls_done=sum(r.subcalls_done for r in runs),
            subcalls_in_flight=sum(r.subcalls_in_flight for r in runs),
            input_tokens=sum(r.input_tokens for r in runs),
            output_tokens=sum(r.output_tokens for r in runs),
            cost_usd=cost,
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

    # ----- building -----

    def apply(self, event: AnyEvent) -> None:
        """Apply an event of this run, or of any run below it (routed by run id)."""
        if isinstance(event, RunStarted) and event.run_id not in self._runs:
            if not self._runs and event.parent_run_id is None:
                self._runs[event.run_id] = self
                self._apply_own(event)
            else:
                self._adopt(event)
            return
        self._runs.get(event.run_id, self)._apply_own(event)

    def _adopt(self, event: RunStarted) -> None:
        parent = self._runs.get(event.parent_run_id or "", self)
        child = Run(retention=self.retention, _runs=self._runs)
        self._runs[event.run_id] = child
        child._apply_own(event)
        cell = parent._cell(event.parent_cell) if event.parent_cell is not None else None
        if cell is None:
            cell = parent._running_cell(event.ts)
        if cell is None:
            parent.children.append(child)
        else:
            child.parent_cell = cell.cell
            cell.children.append(child)

    def _apply_own(self, event: AnyEvent) -> None:
        if self.first_ts is None:
            self.first_ts = event.ts
        self.last_ts = event.ts if self.last_ts is None else max(self.last_ts, event.ts)
        clean = self.retention.clean
        match event:
            case RunStarted():
                self._start(event)
            case IterationStarted():
                self.iterations.append(
                    Iteration(
                        event.iteration,
                        event.last_turn,
                        started=event.ts,
                        max_iterations=event.max_iterations,
                        last_ts=event.ts,
                    )
                )
            case RootTextDelta():
                if self.iterations:
                    # A sequence cut between deltas shows its ESC until the whole reply lands.
                    self.iterations[-1].streamed += clean(event.text)
            case RootReply():
                self._root_reply(event)
            case CellStarted():
                self._cell_started(event)
            case CellFinished():
                self._cell_finished(event)
            case SubcallStarted():
                self._subcall_started(event)
            case SubcallFinished():
                self._subcall_finished(event)
            case Retry():
                self._retry(event)
            case SubcallCached():
                call = self._in_flight.get(event.subcall_id)
                if call is not None:
                    call.cached = True
            case BudgetWarning():
                self.warnings.append(clean(f"{event.limit} {event.used:.0%}"))
            case FinalAnswer():
                self.final = FinalRecord(clean(event.answer), clean(event.source), event.ts)
                self.answer = self.final.answer
                iteration = self._iteration(event.iteration)
                if iteration is not None:
                    iteration.final = self.final
                    iteration.last_ts = max(iteration.last_ts, event.ts)
            case RunFinished():
                self.finished, self.finished_at = event, event.ts
                self.status = clean(event.status)
                self.error = None if event.error is None else clean(event.error)
                self.failures = {clean(str(k)): int(v) for k, v in event.failures.items()}
                self.answer = None if event.answer is None else clean(event.answer)
                # Its usage totals include child runs, which count their own: the tallies built
                # from each call's event already hold this run's share.
            case _:
                assert_never(event)

    def _start(self, event: RunStarted) -> None:
        clean = self.retention.clean
        self.run_id, self.question = event.run_id, clean(event.question)
        self.parent_run_id = event.parent_run_id
        self.parent_cell = event.parent_cell
        self.root_model, self.sub_model = clean(event.root_model), clean(event.sub_model)
        self.inputs, self.context_meta, self.settings = (
            event.inputs,
            event.context_meta,
            event.settings,
        )
        self.depth, self.started, self.has_start = event.depth, event.ts, True
        self.sandbox, self.estimate = event.sandbox, event.estimate
        self.input_summary = None if event.summary is None else clean(event.summary)

    def _iteration(self, number: int) -> Iteration | None:
        for iteration in reversed(self.iterations):
            if iteration.iteration == number:
                return iteration
        return self.iterations[-1] if self.iterations else None

    def _cell(self, number: int) -> Cell | None:
        found = self._cells.get(number)
        return found[1] if found is not None else None

    def _running_cell(self, ts: float) -> Cell | None:
        for _iteration, cell in reversed(self._cells.values()):
            if cell.started <= ts and (cell.finished_at is None or ts <= cell.finished_at):
                return cell
        return None

    def _touch(self, cell_number: int, ts: float) -> None:
        found = self._cells.get(cell_number)
        if found is not None:
            found[0].last_ts = max(found[0].last_ts, ts)

    def _count(self, model: str, tally: Tally) -> None:
        self.tally.add(tally)
        if tally.calls:
            self.by_model.setdefault(model, Tally()).add(tally)

    def _root_reply(self, event: RootReply) -> None:
        iteration = self._iteration(event.iteration)
        if iteration is None:
            return
        clean = self.retention.clean
        tally = Tally.of_call(event.usage, event.cost_usd, failed=False)
        iteration.root = RootCall(
            clean(event.model),
            clean(event.text),
            event.code_blocks,
            event.usage,
            tally,
            event.elapsed_s,
            event.ts,
        )
        iteration.last_ts = max(iteration.last_ts, event.ts)
        self._count(iteration.root.model, tally)

    def _cell_started(self, event: CellStarted) -> None:
        iteration = self._iteration(event.iteration)
        if iteration is None:
            return
        cell = Cell(event.cell, iteration.iteration, self.retention.clean(event.code), event.ts)
        iteration.cells.append(cell)
        self._cells[event.cell] = (iteration, cell)
        iteration.last_ts = max(iteration.last_ts, event.ts)

    def _cell_finished(self, event: CellFinished) -> None:
        cell = self._cell(event.cell)
        if cell is None:
            return
        cell.output, cell.output_chars = self.retention.clean(event.output), event.output_chars
        cell.elapsed_s, cell.finished_at = event.elapsed_s, event.ts
        cell.error, cell.timed_out = event.error, event.timed_out
        cell.worker_restarted = event.worker_restarted
        for batch in cell.batches():  # batch items that never started end with their cell
            if batch.finished_at is None:
                batch.finished_at = event.ts
        self._touch(event.cell, event.ts)

    def _kept(self, text: str) -> str:
        limit = self.retention.text_chars
        return self.retention.clean(text if limit is None else text[:limit])

    def _subcall_started(self, event: SubcallStarted) -> None:
        cell = self._cell(event.cell)
        if cell is None:
            return
        raw: object = event.prompt  # a trace holds a long prompt shortened to head and tail
        shortened = raw if isinstance(raw, dict) else None
        prompt = (
            raw if isinstance(raw, str) else str(shortened.get("head", "")) if shortened else ""
        )
        model = self.retention.clean(event.model)
        call = Subcall(
            event.subcall_id,
            event.cell,
            model,
            self._kept(prompt),
            event.ts,
            batch_id=event.batch_id,
            batch_size=event.batch_size,
            prompt_chars=int(shortened.get("length", 0)) if shortened else len(prompt),
        )
        if shortened is not None and self.retention.text_chars is None:
            clean = self.retention.clean
            head, tail = str(shortened.get("head", "")), str(shortened.get("tail", ""))
            call.shortened = {**shortened, "head": clean(head), "tail": clean(tail)}
        if event.batch_id is not None:
            batch = self._batches.get(event.batch_id)
            if batch is None:
                batch = Batch(
                    event.batch_id, event.batch_size, model, event.ts, self.retention.batch_items
                )
                self._batches[event.batch_id] = batch
                cell.children.append(batch)
            batch.started_call(call)
        else:
            cell.children.append(call)
        self._in_flight[event.subcall_id] = call
        self.subcalls_started += 1
        self.subcalls_in_flight += 1
        self._touch(event.cell, event.ts)

    def _subcall_finished(self, event: SubcallFinished) -> None:
        call = self._in_flight.pop(event.subcall_id, None)  # only calls in flight are looked up
        if call is None:
            return
        clean = self.retention.clean
        failed = event.error is not None
        if event.model != call.model:  # the model that answered, when it is not the one asked
            call.model = clean(event.model)
        call.reply, call.usage = self._kept(event.reply), event.usage
        call.error = None if event.error is None else clean(event.error)
        call.elapsed_s, call.finished_at = event.elapsed_s, event.ts
        call.tally = Tally.of_call(event.usage, event.cost_usd, failed=failed)
        self.subcalls_in_flight -= 1
        self.subcalls_done += 1
        self.subcalls_failed += failed
        self._count(call.model, call.tally)
        if call.batch_id is not None:
            batch = self._batches.get(call.batch_id)
            if batch is not None:
                batch.finished(call)
                if batch.done == batch.size:
                    batch.finished_at = event.ts
        self._touch(event.cell, event.ts)

    def _retry(self, event: Retry) -> None:
        self.retries += 1
        clean = self.retention.clean
        if self.iterations:
            self.iterations[-1].retries.append(
                RetryRecord(
                    clean(event.purpose),
                    clean(event.model),
                    event.attempt,
                    event.delay_s,
                    self._kept(event.reason),
                    event.ts,
                )
            )
        if event.purpose == "root":
            return
        model = clean(event.model)  # calls hold their model made clean
        for call in self._in_flight.values():
            if call.model == model:
                call.retries += 1
                batch = self._batches.get(call.batch_id) if call.batch_id is not None else None
                if batch is not None:
                    batch.retries += 1
                return

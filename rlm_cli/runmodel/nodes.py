"""The parts of a run as the fold builds them: iterations, cells, sub-calls, batches.

Plain typed data; `rlm_cli.runmodel.run.Run` fills it in from events. Nothing here draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rlm_cli.runmodel.tally import Tally, tally_of

if TYPE_CHECKING:
    from rlm_cli.runmodel.run import Run

# The views show this many of a batch's slowest and of its failed items; the rest are counted.
BATCH_SHOWN = 3


def _unchanged(text: str) -> str:
    return text


@dataclass(frozen=True)
class Retention:
    """What a fold keeps. A live view keeps a preview of each sub-call's prompt and reply and
    only the batch items it shows, so a fan-out of thousands costs the same to hold and to draw;
    an export keeps everything. `clean` is applied to run text as it comes in (the views make it
    terminal-safe there, once per event, so no view can forget it)."""

    text_chars: int | None = None  # None: prompts and replies whole
    batch_items: int | None = None  # None: every item of a batch
    clean: Callable[[str], str] = _unchanged


KEEP_ALL = Retention()

SubcallStatus = Literal["ok", "error", "unfinished"]


@dataclass
class Subcall:
    subcall_id: int
    cell: int
    model: str
    prompt: str  # what is kept of it: the head, when the trace stored it shortened
    started: float
    batch_id: int | None = None
    batch_size: int = 1
    prompt_chars: int = 0
    # The trace's shortened form ({"head", "tail", "length", "sha256"}), kept by exports only.
    shortened: dict[str, Any] | None = None
    reply: str = ""
    usage: dict[str, Any] = field(default_factory=dict)  # as reported (`estimated` included)
    tally: Tally = field(default_factory=Tally)
    elapsed_s: float | None = None
    finished_at: float | None = None
    error: str | None = None
    retries: int = 0
    cached: bool = False

    @property
    def done(self) -> bool:
        return self.elapsed_s is not None

    @property
    def status(self) -> SubcallStatus:
        if not self.done:
            return "unfinished"
        return "ok" if self.error is None else "error"


def _slowness(call: Subcall) -> tuple[float, float]:
    # Slowest first; among equals, the one that finished first (as a live view saw them).
    return (-(call.elapsed_s or 0.0), call.finished_at or 0.0)


@dataclass
class Batch:
    batch_id: int
    size: int
    model: str
    started: float
    keep: int | None = None  # Retention.batch_items
    started_count: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    finished_at: float | None = None
    # Every call (keep is None), in start order; else only the slowest and the failed, so a
    # batch of any size costs the same to hold.
    calls: list[Subcall] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return self.started_count - self.done

    @property
    def slowest(self) -> list[Subcall]:
        ok = [c for c in self.calls if c.done and c.error is None]
        return sorted(ok, key=_slowness)[:BATCH_SHOWN]

    @property
    def failures(self) -> list[Subcall]:
        return [c for c in self.calls if c.error is not None][:BATCH_SHOWN]

    def started_call(self, call: Subcall) -> None:
        self.started_count += 1
        if self.keep is None:
            self.calls.append(call)

    def finished(self, call: Subcall) -> None:
        self.done += 1
        self.failed += call.error is not None
        if self.keep is None:
            return
        if call.error is not None:
            if self.failed <= self.keep:
                self.calls.append(call)
            return
        self.calls.append(call)
        ok = sorted((c for c in self.calls if c.error is None), key=_slowness)
        dropped = {id(c) for c in ok[self.keep :]}
        if dropped:
            self.calls = [c for c in self.calls if id(c) not in dropped]


CellStatus = Literal["ok", "error", "timed_out", "unfinished"]


@dataclass
class Cell:
    cell: int
    iteration: int
    code: str
    started: float
    output: str = ""
    output_chars: int = 0
    elapsed_s: float | None = None
    finished_at: float | None = None
    error: bool = False
    timed_out: bool = False
    worker_restarted: bool = False
    # Sub-calls, batches and child runs, in the order they started.
    children: list[Subcall | Batch | Run] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.elapsed_s is not None

    @property
    def status(self) -> CellStatus:
        if not self.done:
            return "unfinished"
        return "timed_out" if self.timed_out else ("error" if self.error else "ok")

    def subcalls(self) -> list[Subcall]:
        """The sub-calls kept, singles and batch items, in sub-call id order."""
        calls: list[Subcall] = []
        for child in self.children:
            if isinstance(child, Subcall):
                calls.append(child)
            elif isinstance(child, Batch):
                calls.extend(child.calls)
        return sorted(calls, key=lambda c: c.subcall_id)

    def batches(self) -> list[Batch]:
        return [child for child in self.children if isinstance(child, Batch)]

    def runs(self) -> list[Run]:
        return [child for child in self.children if not isinstance(child, Subcall | Batch)]

    def tally(self) -> Tally:
        """Its sub-calls' usage (a child run's stays in that run)."""
        return tally_of([call.tally for call in self.subcalls()])


@dataclass
class RootCall:
    """The root model's reply that ended an iteration's model call."""

    model: str
    text: str
    code_blocks: int
    usage: dict[str, Any]
    tally: Tally
    elapsed_s: float
    finished_at: float


@dataclass(frozen=True)
class RetryRecord:
    purpose: str
    model: str
    attempt: int
    delay_s: float
    reason: str
    ts: float


@dataclass(frozen=True)
class FinalRecord:
    answer: str
    source: str
    ts: float


IterationState = Literal["ok", "warning", "error"]


@dataclass
class Iteration:
    iteration: int
    last_turn: bool
    started: float
    max_iterations: int | None = None
    streamed: str = ""
    root: RootCall | None = None
    cells: list[Cell] = field(default_factory=list)
    # Every retry while it ran: of its root call and of its cells' sub-calls.
    retries: list[RetryRecord] = field(default_factory=list)
    final: FinalRecord | None = None
    last_ts: float = 0.0  # the latest event that touched it

    @property
    def reply(self) -> str | None:
        return self.root.text if self.root is not None else None

    @property
    def usage(self) -> dict[str, Any]:
        return self.root.usage if self.root is not None else {}

    @property
    def elapsed_s(self) -> float | None:
        return self.root.elapsed_s if self.root is not None else None

    @property
    def text(self) -> str:
        return self.root.text if self.root is not None else self.streamed

    @property
    def root_retries(self) -> int:
        return sum(r.purpose == "root" for r in self.retries)

    @property
    def end_ts(self) -> float:
        ends = [c.finished_at for c in self.cells if c.finished_at is not None]
        return max([self.last_ts, self.started, *ends])

    @property
    def subcalls(self) -> int:
        return sum(
            child.started_count if isinstance(child, Batch) else 1
            for cell in self.cells
            for child in cell.children
            if isinstance(child, Subcall | Batch)
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
    def state(self) -> IterationState:
        """ "error" (a cell raised), "warning" (sub-calls failed, a batch did not finish, a cell
        timed out, or the iteration never finished: the run was interrupted or stopped) or "ok"."""
        if any(c.error and not c.timed_out for c in self.cells):
            return "error"
        unfinished = self.root is None or any(not c.done or c.timed_out for c in self.cells)
        cut = any(b.done < b.size for cell in self.cells for b in cell.batches())
        return "warning" if unfinished or cut or self.failed else "ok"

    def sub_tally(self) -> Tally:
        return tally_of([cell.tally() for cell in self.cells])

    def tally(self) -> Tally:
        """Its root call and its cells' sub-calls."""
        root = [self.root.tally] if self.root is not None else []
        return tally_of([*root, self.sub_tally()])


@dataclass(frozen=True)
class Totals:
    subcalls_done: int
    subcalls_in_flight: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    subcalls_failed: int = 0  # of those done

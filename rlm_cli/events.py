"""Typed events: the one contract between the engine and whoever watches a run.

Every event is a frozen dataclass with a stable JSON form (`to_json`): `type` names the class,
the rest are its fields. Adding fields is fine; renaming one breaks traces and must not happen.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias

from rlm_cli.errors import RunStatus


@dataclass(frozen=True)
class Event:
    type: ClassVar[str] = "event"
    run_id: str
    ts: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        # Fields are flat JSON values (dicts of numbers at most): a shallow copy is enough, and
        # far cheaper than dataclasses.asdict for the thousands of events of a large fan-out.
        data: dict[str, Any] = {"type": self.type}
        for name in _field_names(type(self)):
            data[name] = getattr(self, name)
        return data


@dataclass(frozen=True)
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    question: str
    root_model: str
    sub_model: str
    inputs: dict[str, Any]
    context_meta: dict[str, Any]
    settings: dict[str, Any]
    depth: int = 0
    parent_run_id: str | None = None
    parent_cell: int | None = None  # the parent's cell whose rlm_query started this run
    # {"mode": "process" | "none", "layers": {name: {"active": bool, "detail": str}}}
    sandbox: dict[str, Any] = field(default_factory=dict)
    # The top run only (None for child runs), made before the first model call: what it may cost
    # ({"low_usd", "high_usd", "unknown_price"}: a bound is None when a model has no price), and
    # the one line the views print for it ("inputs: 3 files · 1.2 MB · ~300K tokens · est. …").
    estimate: dict[str, Any] | None = None
    summary: str | None = None


@dataclass(frozen=True)
class IterationStarted(Event):
    type: ClassVar[str] = "iteration_started"
    iteration: int
    max_iterations: int
    last_turn: bool = False


@dataclass(frozen=True)
class RootTextDelta(Event):
    type: ClassVar[str] = "root_text_delta"
    iteration: int
    text: str


@dataclass(frozen=True)
class RootReply(Event):
    type: ClassVar[str] = "root_reply"
    iteration: int
    text: str
    model: str
    usage: dict[str, int]
    elapsed_s: float
    code_blocks: int
    cost_usd: float | None = None
    cached: bool = False


@dataclass(frozen=True)
class CellStarted(Event):
    type: ClassVar[str] = "cell_started"
    iteration: int
    cell: int
    code: str


@dataclass(frozen=True)
class CellFinished(Event):
    type: ClassVar[str] = "cell_finished"
    iteration: int
    cell: int
    output: str
    output_chars: int
    error: bool
    elapsed_s: float
    timed_out: bool = False
    worker_restarted: bool = False


@dataclass(frozen=True)
class SubcallStarted(Event):
    type: ClassVar[str] = "subcall_started"
    subcall_id: int
    cell: int
    model: str
    prompt: str
    batch_id: int | None = None
    batch_size: int = 1
    # "llm" for llm_query; "rlm_fallback" for an rlm_query at the depth limit, sent as llm_query.
    kind: str = "llm"


@dataclass(frozen=True)
class SubcallFinished(Event):
    type: ClassVar[str] = "subcall_finished"
    subcall_id: int
    cell: int
    model: str
    reply: str
    usage: dict[str, int]
    elapsed_s: float
    error: str | None = None
    batch_id: int | None = None
    cost_usd: float | None = None


@dataclass(frozen=True)
class Retry(Event):
    """A model call failed transiently and will be tried again after `delay_s`."""

    type: ClassVar[str] = "retry"
    purpose: str
    model: str
    attempt: int
    delay_s: float
    reason: str


@dataclass(frozen=True)
class BudgetWarning(Event):
    """`used` (a share, 0.8 or more) of the budget `limit` is spent."""

    type: ClassVar[str] = "budget_warning"
    limit: str
    used: float


@dataclass(frozen=True)
class SubcallCached(Event):
    """A sub-call answered from the reply cache: no request was made, and it cost nothing."""

    type: ClassVar[str] = "subcall_cached"
    subcall_id: int


@dataclass(frozen=True)
class FinalAnswer(Event):
    type: ClassVar[str] = "final_answer"
    iteration: int
    answer: str
    source: str


@dataclass(frozen=True)
class RunFinished(Event):
    type: ClassVar[str] = "run_finished"
    status: RunStatus
    answer: str | None
    iterations: int
    subcalls: int
    usage: dict[str, Any]
    elapsed_s: float
    error: str | None = None
    # Secrets masked by --redact-secrets in the prompts sent: the top run counts its whole tree,
    # a child run its own prompts.
    redacted: int = 0
    # Sub-calls that failed, and by kind (see RunResult); for the top run, its whole tree.
    subcalls_failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)


_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}


def _field_names(cls: type[Event]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


# Every event there is. A fold over events matches on this union and ends in `assert_never`, so
# mypy names each view that does not handle a new event type.
AnyEvent: TypeAlias = (
    RunStarted
    | IterationStarted
    | RootTextDelta
    | RootReply
    | CellStarted
    | CellFinished
    | SubcallStarted
    | SubcallFinished
    | Retry
    | BudgetWarning
    | SubcallCached
    | FinalAnswer
    | RunFinished
)

EVENT_TYPES: dict[str, type[AnyEvent]] = {cls.type: cls for cls in typing.get_args(AnyEvent)}


def event_from_json(data: dict[str, Any]) -> AnyEvent | None:
    """The event a trace line holds; None for lines that are not events (the header) or come
    from a newer rlm. Unknown fields are dropped, so newer traces still load."""
    cls = EVENT_TYPES.get(str(data.get("type")))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


EventHandler = Callable[[AnyEvent], None]
SubscriberErrorHandler = Callable[[EventHandler, BaseException], None]


class EventBus:
    """Fans events out to subscribers, in subscription order, synchronously.

    A subscriber that raises is dropped and reported to `on_error` once: a view or a trace
    must never be able to end the run it watches, nor keep the other subscribers from an event.
    """

    def __init__(
        self,
        handlers: list[EventHandler] | None = None,
        on_error: SubscriberErrorHandler | None = None,
    ) -> None:
        self._handlers: list[EventHandler] = list(handlers or [])
        self._on_error = on_error or _warn

    def subscribe(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    def emit(self, event: AnyEvent) -> None:
        failed = []
        for handler in self._handlers:
            try:
                handler(event)
            except Exception as exc:
                failed.append(handler)
                self._on_error(handler, exc)
        for handler in failed:
            self._handlers.remove(handler)


def _warn(handler: EventHandler, error: BaseException) -> None:
    name = getattr(handler, "__qualname__", type(handler).__name__)
    sys.stderr.write(
        f"rlm: warning: {name} failed ({type(error).__name__}: {error}) and was turned off; "
        "the run goes on\n"
    )

"""The plain view: one short line per step on stderr, for logs, CI and non-terminals."""

from __future__ import annotations

from typing import TextIO, assert_never

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
from rlm_cli.ui.format import first_line, format_tokens, format_usage, sandbox_line
from rlm_cli.ui.safe import terminal_safe


class PlainView:
    """Sub-calls of a batch are summed into one line when the batch completes, not one each."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._batches: dict[int, list[int]] = {}  # batch id -> [size, done, failed]
        self._depths: dict[str, int] = {}  # run id -> depth: child runs' lines are indented
        self._cached: set[int] = set()

    def __call__(self, event: AnyEvent) -> None:
        if isinstance(event, RunStarted):
            self._depths[event.run_id] = event.depth
        line = self._line(event)
        if line is not None:
            depth = self._depths.get(event.run_id, 0)
            prefix = f"{'    ' * depth}[child {event.run_id}] " if depth else ""
            # Lines quote run text (prose, outputs, errors, model names): made safe as a whole.
            self._stream.write(f"rlm: {terminal_safe(prefix + line)}\n")
            self._stream.flush()

    def close(self) -> None:
        pass

    def _line(self, event: AnyEvent) -> str | None:
        match event:
            case RunStarted():
                return self._run_started(event)
            case IterationStarted():
                last = " (last turn: asking for the best answer)" if event.last_turn else ""
                return f"iteration {event.iteration}/{event.max_iterations}{last}"
            case RootTextDelta() | CellStarted():
                return None
            case RootReply():
                tokens = format_usage(event.usage)
                prose = (
                    first_line(event.text.split("```", 1)[0])
                    or f"{event.code_blocks} code block(s)"
                )
                return f"  root replied · {event.elapsed_s:.2f}s · {tokens} · {prose}"
            case CellFinished():
                return _cell_line(event)
            case SubcallStarted():
                if event.batch_id is not None:
                    self._batches.setdefault(event.batch_id, [event.batch_size, 0, 0])
                return None
            case SubcallFinished():
                return self._subcall(event)
            case SubcallCached():
                self._cached.add(event.subcall_id)
                return None
            case BudgetWarning():
                return f"warning: {event.used:.0%} of the {event.limit} budget is used"
            case Retry():
                return (
                    f"  retry {event.attempt} of a {event.purpose} call to {event.model} in "
                    f"{event.delay_s:.1f}s · {first_line(event.reason, 120)}"
                )
            case FinalAnswer():
                return f"answer from {event.source} · {len(event.answer):,} chars"
            case RunFinished():
                return _finished_line(event)
            case _:
                assert_never(event)

    def _run_started(self, event: RunStarted) -> str:
        inputs = event.inputs
        lines = [
            f"run {event.run_id} · root {event.root_model} · worker {event.sub_model} · "
            f"{inputs.get('files', 0)} input(s), {event.context_meta.get('chars', 0):,} chars, "
            f"~{format_tokens(inputs.get('estimated_tokens', 0))} tokens"
        ]
        if event.depth:  # child runs share the top run's inputs and sandbox
            return lines[0]
        if event.summary is not None:  # one line, whatever it holds
            lines.append(" ".join(event.summary.splitlines()))
        if event.sandbox:  # a run that reported none (hand-made events) says nothing of it
            lines.append(sandbox_line(event.sandbox))
        return "\nrlm: ".join(lines)

    def _subcall(self, event: SubcallFinished) -> str | None:
        failed = f" · failed: {event.error}" if event.error else ""
        if event.subcall_id in self._cached:
            failed += " · cached"
        if event.batch_id is None:
            return f"  llm_query · {event.model} · {event.elapsed_s:.2f}s · {format_usage(event.usage)}{failed}"
        batch = self._batches.get(event.batch_id)
        if batch is None:
            return None
        batch[1] += 1
        batch[2] += 1 if event.error else 0
        if batch[1] < batch[0]:
            return None
        del self._batches[event.batch_id]
        return f"  llm_query_batched · {batch[0]} prompt(s) · {batch[2]} failed · {event.model}"


def _cell_line(event: CellFinished) -> str:
    status = "error" if event.error else "ok"
    if event.timed_out:
        status = "timed out"
    if event.worker_restarted:
        status += ", worker restarted"
    # Safe before it is split: a CR in the output is shown, not taken as a line break.
    output = terminal_safe(event.output).strip() if event.error else ""
    tail = f" · {first_line(output.splitlines()[-1])}" if output else ""
    return (
        f"  cell {event.cell} · {status} · {event.elapsed_s:.2f}s · "
        f"{event.output_chars:,} chars out{tail}"
    )


def _finished_line(event: RunFinished) -> str:
    usage = event.usage
    cost = usage.get("cost_usd")
    money = "" if not usage else (" · cost unknown" if cost is None else f" · ${cost:.4f}")
    error = f" · {event.error}" if event.error else ""
    masked = f" · {event.redacted} secret(s) masked" if event.redacted else ""
    return (
        f"finished {event.status} · {event.iterations} iteration(s) · {event.subcalls} sub-call(s)"
        f"{failed_note(event.subcalls_failed, event.failures)} · "
        f"{format_usage(usage)}{money} · {event.elapsed_s:.1f}s{masked}{error}"
    )


def failed_note(failed: int, failures: dict[str, int]) -> str:
    """ " · N sub-call(s) failed (budget 3, provider 1)", or nothing when none failed."""
    if not failed:
        return ""
    kinds = ", ".join(
        f"{kind} {count}" for kind, count in sorted(failures.items(), key=lambda kv: -kv[1])
    )
    return f" · {failed} sub-call(s) failed" + (f" ({kinds})" if kinds else "")

"""The tree view: a run drawn as a Rich tree, live on a terminal or from a trace.

`render(run, ...)` is a pure function of the run model (`rlm_cli.runmodel.Run`, folded by
`ui.model.RunTree` or `trace.reader.fold_trace`); `LiveTreeView` is the event subscriber that keeps
a model up to date and lets Rich's refresh thread redraw it about ten times a second, so drawing
never waits on the run and the run never waits on drawing. The top run's input summary line is
printed once above the live region, so it stays in the scrollback.

Run text reaches this module already made safe by the model (`terminal_safe`); what it formats
itself from the run's ids and dicts is made safe here. All of it is drawn as `Text`, never parsed
as Rich markup: a `str` given to a table cell would be, so a reply could style or link itself.
"""

from __future__ import annotations

import functools
import threading
import time
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from rlm_cli.events import AnyEvent, RunStarted
from rlm_cli.ui.format import first_line, format_tokens, format_usage, sandbox_line
from rlm_cli.ui.model import Batch, Cell, Iteration, Run, RunTree, Subcall
from rlm_cli.ui.safe import terminal_safe

REFRESH_PER_SECOND = 10
PROSE_LINES = 3
CODE_LINES = 15
OUTPUT_LINES = 6
RECENT_ITERATIONS = 6  # collapsed iterations shown before "... N earlier"
PREVIEW = 60
RECENT_SUBCALLS = 5  # single llm_query calls shown per cell before "… N earlier"


def render(
    run: Run,
    *,
    expanded: bool = False,
    now: float | None = None,
    only_iteration: int | None = None,
) -> RenderableType:
    """Header, tree and footer. Live: finished iterations collapse to one line. `expanded`
    shows every iteration open (trace show); `only_iteration` shows one, uncut."""
    parts: list[RenderableType] = [_header(run), _run_tree(run, expanded, now, only_iteration)]
    if run.answer is not None and run.status is not None:
        parts.append(Text.assemble(("answer ", "bold green"), first_line(run.answer, 200)))
    if run.error:
        parts.append(Text.assemble(("error ", "bold red"), run.error))
    parts.append(_footer(run, now))
    return Group(*parts)


def _run_tree(
    run: Run, expanded: bool, now: float | None, only_iteration: int | None = None
) -> Tree:
    """One run's iterations as a tree; a child run (rlm_query) is labelled with its question."""
    run_id = terminal_safe(run.run_id)
    label = Text(f"run {run_id}", style="bold")
    if run.depth:
        label = Text.assemble(
            (f"child run {run_id} ", "bold magenta"), (f"depth {run.depth} · ", "dim")
        )
        label.append(first_line(run.question, 80), style="italic")
        if run.status is not None:
            label.append(f" · {run.status}", style="green" if run.status == "ok" else "red")
    tree = Tree(label, guide_style="dim")
    iterations = run.iterations
    if only_iteration is not None:
        iterations = [i for i in iterations if i.iteration == only_iteration]
    hidden = 0
    if not expanded and only_iteration is None and len(iterations) > RECENT_ITERATIONS:
        hidden = len(iterations) - RECENT_ITERATIONS
        iterations = iterations[hidden:]
        tree.add(Text(f"… {hidden} earlier iteration(s)", style="dim"))
    # While the next root reply streams, the iteration before it stays open: what its cells
    # printed, or why they failed, is what the user wants to read while the model thinks.
    latest = run.iterations[-1] if run.iterations and run.status is None else None
    previous = (
        run.iterations[-2] if latest and latest.reply is None and len(run.iterations) > 1 else None
    )
    for iteration in iterations:
        current = iteration is latest or iteration is previous
        if expanded or current or only_iteration is not None:
            over = run.status is not None
            _iteration_open(tree, iteration, full=only_iteration is not None, now=now, over=over)
        else:
            tree.add(_iteration_line(iteration))
    for child in run.children:  # child runs started in none of its cells (hand-made traces)
        tree.add(_run_tree(child, expanded, now))
    if run.depth and run.answer is not None and run.status is not None:
        tree.add(Text.assemble(("→ ", "green"), first_line(run.answer, 100)))
    return tree


def _header(run: Run) -> RenderableType:
    inputs = run.inputs
    chars = run.context_meta.get("chars", inputs.get("bytes", 0))
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    grid.add_row("question", Text(run.question))
    files = f"{inputs.get('files', 0)} file(s) · {chars:,} chars · "
    tokens = f"~{format_tokens(int(inputs.get('estimated_tokens', 0)))} tokens"
    grid.add_row("inputs", Text(terminal_safe(files + tokens)))
    grid.add_row("models", Text(f"root {run.root_model} · worker {run.sub_model}"))
    if run.sandbox:  # hand-made events may report none
        line = sandbox_line(run.sandbox)
        weak = run.sandbox.get("mode") == "none" or "WEAKER" in line
        style = "bold red" if weak else ""
        grid.add_row("sandbox", Text(terminal_safe(line.removeprefix("sandbox ")), style))
    return grid


# An iteration's mark by its state (Iteration.state): ✓ only when nothing was lost.
MARKS = {"ok": ("✓ ", "green"), "warning": ("⚠ ", "yellow"), "error": ("✗ ", "red")}


def _failed_note(iteration: Iteration) -> Text:
    failed = iteration.failed
    return Text(f" ({failed} failed)" if failed else "", style="red")


def _iteration_line(iteration: Iteration) -> Text:
    elapsed = (iteration.elapsed_s or 0) + sum(c.elapsed_s or 0 for c in iteration.cells)
    error = _error_line(iteration)  # why it failed stays in sight after it folds, first
    line = Text.assemble(
        MARKS[iteration.state],
        (f"iteration {iteration.iteration}", "bold"),
        (f" · {len(iteration.cells)} cell(s) · {iteration.subcalls} sub-call(s)", "dim"),
        _failed_note(iteration),
        (f" · {elapsed:.1f}s · {format_usage(iteration.usage)}", "dim"),
        ("  " + error if error else "", "red"),
        ("  " + _prose(iteration.text, 1), "dim italic"),
    )
    line.no_wrap, line.overflow = True, "ellipsis"  # one line per finished iteration, always
    return line


def _error_line(iteration: Iteration) -> str:
    """The last line of the first failed cell's output (the exception, as Python prints it)."""
    for cell in iteration.cells:
        if cell.error and cell.output.strip():
            return first_line(cell.output.strip().splitlines()[-1], 120)
    return ""


def _iteration_open(
    tree: Tree, iteration: Iteration, *, full: bool, now: float | None, over: bool = False
) -> None:
    label = Text.assemble((f"iteration {iteration.iteration}", "bold"))
    state = iteration.state
    if over and state != "ok":  # a finished run's iteration that lost work (trace show): say so
        label = Text.assemble(MARKS[state], label)
        failed = iteration.failed
        if failed:
            label.append(f" · {failed} sub-call(s) failed", style="red")
    if iteration.last_turn:
        label.append(" · last turn: asking for the best answer", style="yellow")
    if iteration.root_retries:
        label.append(f" · {iteration.root_retries} retried", style="yellow")
    if iteration.elapsed_s is not None:
        label.append(f" · root {iteration.elapsed_s:.1f}s · {format_usage(iteration.usage)}", "dim")
    node = tree.add(label)
    prose = iteration.text if full else _prose(iteration.text, PROSE_LINES)
    if prose.strip():
        node.add(Text(prose, style="dim italic"))
    if iteration.reply is None:
        # Still streaming: show the code being written.
        code = _open_code(iteration.streamed)
        if code is not None:
            node.add(_syntax(code, tail=True))
        return
    for cell in iteration.cells:
        _cell(node, cell, full=full, now=now, over=over)


def _cell(parent: Tree, cell: Cell, *, full: bool, now: float | None, over: bool = False) -> None:
    if cell.done:
        status = ("error", "red") if cell.error else ("ok", "green")
        if cell.timed_out:
            status = ("timed out", "red")
        label = Text.assemble(f"cell {cell.cell} ", status, (f" · {cell.elapsed_s:.2f}s", "dim"))
        if cell.worker_restarted:
            label.append(" · worker restarted", style="yellow")
    elif over:  # the run ended while the cell ran: interrupted, or stopped
        label = Text.assemble(f"cell {cell.cell} ", ("interrupted", "yellow"))
    else:
        label = Text.assemble(f"cell {cell.cell} ", ("running", "yellow"))
    node = parent.add(label)
    node.add(_syntax(cell.code, tail=False, limit=None if full else CODE_LINES))
    singles = [child for child in cell.children if isinstance(child, Subcall)]
    hidden = set() if full else {id(call) for call in singles[:-RECENT_SUBCALLS]}
    if hidden:
        node.add(Text(f"… {len(hidden)} earlier llm_query call(s)", style="dim"))
    for child in cell.children:
        if isinstance(child, Batch):
            _batch(node, child, now)
        elif isinstance(child, Subcall):
            if id(child) not in hidden:
                _subcall(node, child, full=full)
        else:
            node.add(_run_tree(child, full, now))
    if cell.done and cell.output.strip():
        output = cell.output if full else _trim_lines(cell.output, OUTPUT_LINES)
        node.add(Text(output.rstrip("\n"), style="red" if cell.error else ""))


def _subcall(parent: Tree, call: Subcall, *, full: bool) -> None:
    prompt = call.prompt if full else _preview(call.prompt)
    label = Text.assemble(("llm_query ", "cyan"), (call.model, "dim"), " ")
    if call.retries:
        label.append(f"retried {call.retries}x ", style="yellow")
    if call.cached:
        label.append("cached ", style="green")
    if not call.done:
        label.append("… ", style="yellow")
        label.append(prompt, style="dim")
        parent.add(label)
        return
    label.append(f"{call.elapsed_s:.2f}s {format_usage(call.usage)} ", style="dim")
    node = parent.add(label)
    if full:
        node.add(Text(prompt, style="dim"))
        node.add(Text(call.error or call.reply, style="red" if call.error else ""))
    else:
        reply = (
            Text(f"→ {call.error}", style="red")
            if call.error
            else Text(f"→ {_preview(call.reply)}")
        )
        node.add(Text.assemble((prompt + " ", "dim"), reply))


def _batch(parent: Tree, batch: Batch, now: float | None) -> None:
    label = Text.assemble(("llm_query_batched ", "cyan"), (batch.model, "dim"))
    bar = ProgressBar(total=batch.size, completed=batch.done, width=20)
    summary = Text(f" {batch.done}/{batch.size} done, {batch.in_flight} in flight")
    if batch.failed:
        summary.append(f", {batch.failed} failed", style="red")
    if batch.retries:
        summary.append(f", {batch.retries} retried", style="yellow")
    end = batch.finished_at or now or time.time()
    summary.append(f" · {max(end - batch.started, 0):.1f}s", style="dim")
    row = Table.grid(padding=(0, 1))
    row.add_column(no_wrap=True)
    row.add_column(width=20)
    row.add_column(no_wrap=True, overflow="ellipsis")
    row.add_row(label, bar, summary)
    node = parent.add(row)
    for call in batch.slowest:
        node.add(
            Text(
                f"slow {call.elapsed_s:.2f}s · {_preview(call.prompt)} → {_preview(call.reply)}",
                style="dim",
                no_wrap=True,
                overflow="ellipsis",
            )
        )
    for call in batch.failures:
        line = f"failed · {_preview(call.prompt)} → {call.error}"
        node.add(Text(line, style="red", no_wrap=True, overflow="ellipsis"))


def _footer(run: Run, now: float | None) -> Text:
    max_iterations = terminal_safe(str(run.settings.get("max_iterations", "?")))
    text = Text(style="on grey15")
    text.append(f" {run.elapsed(now):.1f}s ", style="bold")
    text.append(f"· iteration {len(run.iterations)} of {max_iterations} ")
    totals = run.totals()
    text.append(f"· sub-calls {totals.subcalls_done} done, {totals.subcalls_in_flight} in flight")
    if totals.subcalls_failed:
        text.append(f", {totals.subcalls_failed} failed", style="bold red")
    text.append(" ")
    text.append(
        f"· {format_tokens(totals.input_tokens)} in / {format_tokens(totals.output_tokens)} out "
    )
    text.append("· cost unknown " if totals.cost_usd is None else f"· ${totals.cost_usd:.4f} ")
    nearest = run.nearest_limit(now)
    if nearest is not None:
        name, used = nearest
        text.append(f"· nearest limit: {name} {used:.0%} ", style="yellow" if used >= 0.8 else "")
    if run.status is not None:
        text.append(f"· {run.status} ", style="bold green" if run.status == "ok" else "bold red")
    return text


def _syntax(code: str, *, tail: bool, limit: int | None = CODE_LINES) -> RenderableType:
    lines = code.rstrip("\n").splitlines()
    if limit is not None and len(lines) > limit:
        cut = len(lines) - limit
        lines = lines[-limit:] if tail else lines[:limit]
        note = f"# … {cut} more line(s)"
        lines = [note, *lines] if tail else [*lines, note]
    return _highlighted("\n".join(lines))


@functools.lru_cache(maxsize=256)
def _highlighted(code: str) -> Text:
    """Python highlighted once per distinct text: lexing on every redraw would cost more than
    the rest of the tree (a cell's code does not change while the tree redraws ten times a
    second)."""
    syntax = Syntax(code, "python", theme="ansi_dark", background_color="default")
    highlighted = syntax.highlight(code)
    highlighted.rstrip()  # highlight() ends the text with a newline of its own
    return highlighted


def _open_code(streamed: str) -> str | None:
    """The code of the block being streamed (the last one opened), if any."""
    start = max(streamed.rfind("```repl"), streamed.rfind("```python"))
    if start < 0:
        return None
    body = streamed[start:].split("\n", 1)
    return body[1].split("```", 1)[0] if len(body) == 2 else ""


def _prose(text: str, lines: int) -> str:
    prose = text.split("```", 1)[0].strip()
    kept = prose.splitlines()[:lines]
    return "\n".join(kept)


def _trim_lines(text: str, lines: int) -> str:
    all_lines = text.rstrip("\n").splitlines()
    if len(all_lines) <= lines:
        return text
    half = lines // 2
    cut = len(all_lines) - 2 * half
    return "\n".join([*all_lines[:half], f"… {cut} line(s) …", *all_lines[-half:]])


def _preview(text: str) -> str:
    return first_line(" ".join(text.split()), PREVIEW)


class LiveTreeView:
    """Subscribes to events and keeps a live tree on the terminal (stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self._run = RunTree()
        self._lock = threading.Lock()
        self._console = Console(file=stream, stderr=True)
        self._live = Live(
            console=self._console,
            get_renderable=self._renderable,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,  # stdout is the answer's alone
            redirect_stderr=False,
            transient=False,
        )
        self._live.start()

    def __call__(self, event: AnyEvent) -> None:
        with self._lock:
            self._run.apply(event)
        if isinstance(event, RunStarted) and event.depth == 0 and self._run.input_summary:
            # Above the live region, so it stays in the scrollback once the tree is redrawn.
            # Outside the lock: printing redraws the live region, which takes the lock.
            self._console.print(Text(f"rlm: {self._run.input_summary}"))

    def _renderable(self) -> RenderableType:
        with self._lock:
            return render(self._run, now=time.time())

    def close(self) -> None:
        """Draw the final state once and leave it on the terminal."""
        self._live.stop()

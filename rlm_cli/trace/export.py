"""Trace exports: the trajectory document as JSON, and one self-contained HTML page.

`export_json(trace)` is the document of `rlm_cli.trace.reader.trajectory` (its shape is described
there). `export_html(trace)` is one HTML file that needs nothing else to be read: no network, no
CDN, inline CSS and a little inline JavaScript (the page works without it), every piece of trace
text HTML-escaped. It holds:

- a header: `#question`, `#models`, `#inputs`, `#status`, `#totals`, `#answer` (and `#error`,
  `#partial-note` when they apply);
- `#iteration-table`: tokens and cost per iteration (`tr.iteration-row`), totals in `#usage-total`;
- `#timeline`: an inline SVG with one `rect.subcall-bar` per sub-call from its start to its finish,
  in lanes so calls in flight at the same time stack (`data-lanes` is the most at once);
- `#tree`: the run as nested `<details>`: `.run` > `.iteration` > `.cell` > (`.batch` >)
  `.subcall`, with `data-status` on cells and sub-calls, and child runs (`.run.child-run`) under
  the cell that started them. Code is highlighted by a small Python highlighter of our own (`.code`
  with `.kw`, `.str`, `.num`, `.com`, ... spans), so the page needs no library to view.

Ids of the main run are `iteration-N`, `cell-N`, `subcall-N`; a child run's are prefixed with
`RUNID-`. These ids and classes are kept stable for tools and tests.
"""

from __future__ import annotations

import builtins
import html
import io
import json
import keyword
import math
import token
import tokenize
from typing import Any

from rlm_cli.trace.reader import Doc, Trace, iter_subcalls, trajectory

FORMATS = ("json", "html")


def export(trace: Trace, fmt: str) -> str:
    """The export of `trace` in `fmt` (one of FORMATS)."""
    if fmt == "json":
        return export_json(trace)
    if fmt == "html":
        return export_html(trace)
    raise ValueError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def export_json(trace: Trace) -> str:
    """The trajectory document as indented JSON, ending with a newline."""
    text = json.dumps(trajectory(trace), indent=2, ensure_ascii=False) + "\n"
    # A lone surrogate (from a name that was not valid UTF-8) cannot be written as UTF-8; as a
    # \\udcXX escape it is still the same JSON string.
    return _encodable(text, "backslashreplace")


def export_html(trace: Trace) -> str:
    """One self-contained HTML page of the run."""
    return _Page(trajectory(trace)).render()


# --- text helpers --------------------------------------------------------------------------------


def _encodable(text: str, errors: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", errors).decode("utf-8")
    return text


def _e(value: Any) -> str:
    """Escaped text for an HTML text node or a quoted attribute."""
    return html.escape(_encodable("" if value is None else str(value), "replace"), quote=True)


def _tokens(count: Any) -> str:
    return f"{int(count or 0):,}"


def _cost(cost: Any) -> str:
    if cost is None:
        return "unknown"
    if 0 < cost < 0.0001:
        return "<$0.0001"
    return f"${cost:.4f}"


def _secs(seconds: Any) -> str:
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{seconds:.2f} s"
    return f"{seconds:.1f} s"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _preview(text: Any, width: int = 100) -> str:
    """The first non-blank line, cut to `width` characters."""
    for line in str(text or "").splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, dict):
        return str(prompt.get("head", ""))
    return str(prompt or "")


# --- Python highlighting -------------------------------------------------------------------------

# Names the REPL gives the root model's code: shown apart, since they are where the work happens.
_SCAFFOLD = frozenset(
    {"context", "llm_query", "llm_query_batched", "FINAL", "FINAL_VAR", "SHOW_VARS", "answer"}
)
_BUILTINS = frozenset(dir(builtins))
_STRING_TYPES = {token.STRING} | {
    getattr(token, name)
    for name in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
    if hasattr(token, name)  # Python 3.12 splits f-strings into parts
}


def highlight_python(code: str) -> str:
    """Escaped HTML of `code` with spans for keywords, strings, numbers, comments, builtins and
    the REPL's own names. Code that does not tokenize (models write broken code) is highlighted
    up to the problem and plain after it."""
    lines = io.StringIO(code).readlines()
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    parts: list[str] = []
    done = 0
    previous = ""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            cls = _token_class(tok, previous)
            if tok.type not in (token.NL, token.NEWLINE, token.INDENT, token.DEDENT):
                previous = tok.string
            if cls is None or tok.start[0] > len(lines):
                continue
            start = starts[tok.start[0] - 1] + tok.start[1]
            end = starts[tok.end[0] - 1] + tok.end[1] if tok.end[0] <= len(lines) else len(code)
            if start < done:
                continue
            parts.append(_e(code[done:start]))
            parts.append(f'<span class="{cls}">{_e(code[start:end])}</span>')
            done = end
    except (tokenize.TokenError, SyntaxError):
        pass
    parts.append(_e(code[done:]))
    return "".join(parts)


def _token_class(tok: tokenize.TokenInfo, previous: str) -> str | None:
    if tok.type in _STRING_TYPES:
        return "str"
    if tok.type == token.COMMENT:
        return "com"
    if tok.type == token.NUMBER:
        return "num"
    if tok.type == token.NAME:
        if keyword.iskeyword(tok.string) or keyword.issoftkeyword(tok.string):
            return "kw"
        if previous in ("def", "class"):
            return "def"
        if tok.string in _SCAFFOLD:
            return "rlm"
        if tok.string in _BUILTINS:
            return "bi"
    return None


# --- the timeline --------------------------------------------------------------------------------

_WIDTH = 1000
_LANE = 10
_GAP = 3
_AXIS = 30


def _lanes(spans: list[tuple[float, float]]) -> tuple[list[int], int]:
    """A lane for each (start, end) span so spans in one lane never overlap, in as few lanes as
    possible (greedy by start time, which is optimal for intervals): the lane count is the most
    spans in flight at one time."""
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    ends: list[float] = []
    lanes = [0] * len(spans)
    for index in order:
        start, end = spans[index]
        for lane, lane_end in enumerate(ends):
            if lane_end <= start:
                ends[lane] = end
                lanes[index] = lane
                break
        else:
            lanes[index] = len(ends)
            ends.append(end)
    return lanes, len(ends)


def _tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about six ticks over `span`."""
    raw = span / 6
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _timeline(run: Doc, ids: dict[int, str]) -> str:
    calls = [c for c in iter_subcalls(run) if c["start_ts"] is not None]
    if not calls:
        return (
            '<section id="timeline" data-lanes="0" data-subcalls="0"><h2>Sub-call timeline</h2>'
            '<p class="caption">No sub-calls in this run.</p></section>'
        )
    run_start = (
        run["start_ts"] if run["start_ts"] is not None else min(c["start_ts"] for c in calls)
    )
    t0: float = min([run_start, *(c["start_ts"] for c in calls)])
    known_ends = [c["end_ts"] for c in calls if c["end_ts"] is not None]
    t1: float = max([run["end_ts"] or t0, *known_ends, *(c["start_ts"] for c in calls)])
    span = max(t1 - t0, 1e-3)
    # A call still in flight when the trace ends is drawn to the trace's end.
    spans = [(c["start_ts"], c["end_ts"] if c["end_ts"] is not None else t1) for c in calls]
    lanes, count = _lanes(spans)

    def x(ts: float) -> float:
        return (ts - t0) / span * _WIDTH

    height = _AXIS + count * (_LANE + _GAP) + _GAP
    parts = [
        f'<svg class="timeline" viewBox="0 0 {_WIDTH} {height}" width="100%" '
        f'role="img" aria-label="sub-calls over time">'
    ]
    # Iteration bands behind the bars, so a burst of calls can be told to its iteration.
    label_end = -float(_WIDTH)
    for node in run["iterations"]:
        left, right = x(node["start_ts"]), x(max(node["end_ts"], node["start_ts"]))
        band = "band-even" if node["iteration"] % 2 == 0 else "band-odd"
        parts.append(
            f'<rect class="iteration-band {band}" x="{left:.2f}" y="{_AXIS - 12}" '
            f'width="{max(right - left, 0.5):.2f}" height="{height - _AXIS + 12}">'
            f"<title>iteration {node['iteration']}</title></rect>"
        )
        if left >= label_end:  # instant iterations would print their numbers on top of each other
            parts.append(
                f'<text class="band-label" x="{left + 2:.2f}" y="{_AXIS - 3}">'
                f"{node['iteration']}</text>"
            )
            label_end = left + 8 + 6 * len(str(node["iteration"]))
    step = _tick_step(span)
    ticks = int(span / step) + 1
    for k in range(ticks):
        at = k * step
        parts.append(
            f'<line class="tick" x1="{x(t0 + at):.2f}" x2="{x(t0 + at):.2f}" y1="0" y2="{height}"/>'
            f'<text class="tick-label" x="{x(t0 + at) + 2:.2f}" y="10">{_axis_label(at, step)}</text>'
        )
    for call, (start, end), lane in zip(calls, spans, lanes, strict=True):
        left = x(start)
        width = max(x(end) - left, 1.5)  # an instant call still shows
        y = _AXIS + lane * (_LANE + _GAP)
        target = ids.get(id(call), "")
        tip = (
            f"#{call['subcall_id']} · {call['model']} · {call['status']} · "
            f"{_secs(call['elapsed_s'])} · from {start - t0:.3f} s · "
            f"{_preview(_prompt_text(call['prompt']), 80)}"
        )
        parts.append(
            f'<rect class="subcall-bar status-{_e(call["status"])}" x="{left:.2f}" y="{y}" '
            f'width="{width:.2f}" height="{_LANE}" data-target="{_e(target)}" '
            f'data-subcall="{call["subcall_id"]}" data-lane="{lane}"><title>{_e(tip)}</title></rect>'
        )
    parts.append("</svg>")
    caption = (
        f"{_plural(len(calls), 'sub-call')} over {_secs(t1 - t0)} · at most {count:,} in flight "
        "at once · shaded bands are iterations; a bar opens its sub-call below"
    )
    return (
        f'<section id="timeline" data-lanes="{count}" data-subcalls="{len(calls)}">'
        f'<h2>Sub-call timeline</h2><p class="caption">{_e(caption)}</p>'
        f'<div class="timeline-scroll">{"".join(parts)}</div></section>'
    )


def _axis_label(at: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{at:.{decimals}f} s"


# --- the page ------------------------------------------------------------------------------------


class _Page:
    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.run: Doc = doc["run"]
        # Element id of each sub-call node, by the node's identity, for the timeline's links.
        self.ids: dict[int, str] = {}

    def render(self) -> str:
        tree = self._run(self.run, main=True)  # first: it assigns the ids the timeline links to
        question = _preview(self.doc.get("question"), 80) or "rlm run"
        return "".join(
            [
                '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
                # Belt and braces for "no network": the page may load nothing from anywhere.
                '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
                "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n",
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
                f"<title>rlm · {_e(question)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
                self._header(),
                '<nav class="controls"><button type="button" data-action="expand">Expand all'
                '</button> <button type="button" data-action="collapse">Collapse all</button>'
                "</nav>\n",
                self._table(),
                _timeline(self.run, self.ids),
                f'<section id="tree"><h2>Trajectory</h2>{tree}</section>\n',
                self._footer(),
                f"<script>{_JS}</script>\n</body>\n</html>\n",
            ]
        )

    # header and footer

    def _header(self) -> str:
        run, doc = self.run, self.doc
        status = run["status"]
        inputs = doc.get("inputs") or {}
        names = [str(n) for n in inputs.get("names") or []]
        shown = ", ".join(names[:10]) + (
            f" and {len(names) - 10:,} more" if len(names) > 10 else ""
        )
        input_line = (
            f"{_plural(int(inputs.get('files', 0) or 0), 'input')} · "
            f"{_tokens(inputs.get('bytes'))} bytes · ~{_tokens(inputs.get('estimated_tokens'))} "
            f"tokens{' · ' + shown if shown else ''}"
            if inputs
            else "none recorded"
        )
        usage = run["usage"]
        totals = (
            f"{_plural(run['counts']['iterations'], 'iteration')} · "
            f"{_plural(run['counts']['subcalls'], 'sub-call')} · "
            f"{_tokens(usage.get('input_tokens'))} in / {_tokens(usage.get('output_tokens'))} out "
            f"tokens · {_cost(usage.get('cost_usd'))} · {_secs(run['elapsed_s'])}"
        )
        failed = int(run.get("subcalls_failed") or 0)
        if failed:  # the work the answer does not rest on, as the CLI's summary line says it
            kinds = ", ".join(
                f"{kind} {count}"
                for kind, count in sorted(
                    (run.get("failures") or {}).items(), key=lambda kv: -kv[1]
                )
            )
            totals += f" · {_plural(failed, 'sub-call')} failed" + (f" ({kinds})" if kinds else "")
        if run["answer"] is not None:
            answer = f'<pre id="answer" class="answer">{_e(run["answer"])}</pre>'
        else:
            answer = '<p id="answer" class="answer none">No answer.</p>'
        notes = []
        if not doc["trace"]["complete"]:
            cut = " Its last line was cut off mid-write." if doc["trace"]["truncated"] else ""
            notes.append(
                '<p id="partial-note" class="warn">This trace ends before the run finished '
                f"(the process was stopped, or is still running): it shows every step recorded.{cut}"
                "</p>"
            )
        if run["error"]:
            notes.append(f'<p id="error" class="error">{_e(run["error"])}</p>')
        return (
            '<header id="summary"><h1>rlm run</h1><dl>'
            f'<dt>Question</dt><dd id="question">{_e(doc.get("question"))}</dd>'
            f'<dt>Models</dt><dd id="models">root <code>{_e(run["root_model"])}</code> · '
            f"worker <code>{_e(run['sub_model'])}</code></dd>"
            f'<dt>Inputs</dt><dd id="inputs">{_e(input_line)}</dd>'
            f'<dt>Status</dt><dd id="status" class="status status-{_e(status)}">{_e(status)}</dd>'
            f'<dt>Totals</dt><dd id="totals">{_e(totals)}</dd></dl>'
            f"{''.join(notes)}<h2>Answer</h2>{answer}</header>\n"
        )

    def _footer(self) -> str:
        trace = self.doc["trace"]
        return (
            f"<footer><p>From <code>{_e(trace['path'])}</code> · trace format "
            f"{_e(trace['format_version'])} · written by rlm {_e(trace['rlm_version'])}"
            f"{' · run ' + _e(self.run['run_id']) if self.run['run_id'] else ''}</p></footer>\n"
        )

    # the per-iteration table

    def _table(self) -> str:
        head = (
            "<tr><th>Iteration</th><th>Root in</th><th>Root out</th><th>Cached in</th>"
            "<th>Sub-calls</th><th>Sub in</th><th>Sub out</th><th>Tokens</th><th>Cost</th>"
            "<th>Time</th></tr>"
        )
        rows = []
        for node in self.run["iterations"]:
            root = node["root"]["usage"] if node["root"] else {}
            sub, total = node["sub_usage"], node["usage"]
            rows.append(
                f'<tr class="iteration-row" data-iteration="{node["iteration"]}">'
                f'<td><a href="#iteration-{node["iteration"]}">{node["iteration"]}</a></td>'
                f"<td>{_tokens(root.get('input_tokens'))}</td>"
                f"<td>{_tokens(root.get('output_tokens'))}</td>"
                f"<td>{_tokens(total['cached_input_tokens'])}</td>"
                f"<td>{node['subcalls']:,}</td>"
                f"<td>{_tokens(sub['input_tokens'])}</td><td>{_tokens(sub['output_tokens'])}</td>"
                f"<td>{_tokens(total['input_tokens'] + total['output_tokens'])}</td>"
                f"<td>{_cost(total['cost_usd'])}</td><td>{_secs(node['elapsed_s'])}</td></tr>"
            )
        usage = self.run["usage"]
        by_model = usage.get("by_model") or {}
        root_model, sub_model = self.run["root_model"], self.run["sub_model"]
        root = by_model.get(root_model, {})
        sub = by_model.get(sub_model, {}) if sub_model != root_model else {}
        foot = (
            '<tr id="usage-total"><th>Total</th>'
            f"<td>{_tokens(root.get('input_tokens'))}</td>"
            f"<td>{_tokens(root.get('output_tokens'))}</td>"
            f"<td>{_tokens(usage.get('cached_input_tokens'))}</td>"
            f"<td>{self.run['counts']['subcalls']:,}</td>"
            f"<td>{_tokens(sub.get('input_tokens'))}</td><td>{_tokens(sub.get('output_tokens'))}</td>"
            f"<td>{_tokens(int(usage.get('input_tokens', 0)) + int(usage.get('output_tokens', 0)))}"
            f"</td><td>{_cost(usage.get('cost_usd'))}</td><td>{_secs(self.run['elapsed_s'])}</td>"
            "</tr>"
        )
        models = "".join(
            f"<li><code>{_e(model)}</code>: {_plural(int(t.get('calls', 0)), 'call')}, "
            f"{_tokens(t.get('input_tokens'))} in / {_tokens(t.get('output_tokens'))} out, "
            f"{_cost(t.get('cost_usd'))}</li>"
            for model, t in by_model.items()
        )
        return (
            '<section id="usage"><h2>Tokens and cost per iteration</h2>'
            f'<table id="iteration-table"><thead>{head}</thead><tbody>{"".join(rows)}</tbody>'
            f'<tfoot>{foot}</tfoot></table><ul id="by-model">{models}</ul></section>\n'
        )

    # the tree

    def _run(self, run: Doc, *, main: bool = False) -> str:
        prefix = "" if main else f"{run['run_id']}-"
        usage = run["usage"]
        summary = (
            f'<span class="label">Run {_e(run["run_id"] or "")}</span> '
            f'<span class="badge status-{_e(run["status"])}">{_e(run["status"])}</span> · '
            f"{_plural(run['counts']['iterations'], 'iteration')} · "
            f"{_plural(run['counts']['subcalls'], 'sub-call')} · "
            f"{_tokens(usage.get('input_tokens'))} in / {_tokens(usage.get('output_tokens'))} out · "
            f"{_cost(usage.get('cost_usd'))} · {_secs(run['elapsed_s'])}"
        )
        body = []
        if not main:
            body.append(
                f'<p class="child-question">depth {_e(run["depth"])} · question: '
                f"{_e(run['question'])} · answer: {_e(run['answer'])}</p>"
            )
        body += [self._iteration(node, prefix) for node in run["iterations"]]
        body += [self._run(child) for child in run["children"]]
        classes = "run" if main else "run child-run"
        anchor = "" if main else f' id="run-{_e(run["run_id"])}"'
        return (
            f'<details class="{classes}"{anchor} data-run="{_e(run["run_id"] or "")}" open>'
            f'<summary>{summary}</summary><div class="body">{"".join(body)}</div></details>'
        )

    def _iteration(self, node: Doc, prefix: str) -> str:
        root = node["root"]
        bits = [f'<span class="label">Iteration {node["iteration"]}</span>']
        if node["last_turn"]:
            bits.append("last turn")
        if root is not None:
            bits.append(
                f"root {_tokens(root['usage']['input_tokens'])} in / "
                f"{_tokens(root['usage']['output_tokens'])} out"
            )
        bits.append(_plural(len(node["cells"]), "cell"))
        if node["subcalls"]:
            bits.append(_plural(node["subcalls"], "sub-call"))
        bits.append(_cost(node["usage"]["cost_usd"]))
        bits.append(_secs(node["elapsed_s"]))
        if node["final"] is not None:
            bits.append('<span class="badge final">final answer</span>')
        if node["status"] == "unfinished":
            bits.append('<span class="badge status-incomplete">unfinished</span>')
        body = []
        if root is not None:
            prose = root["text"].split("```", 1)[0].strip()
            if prose:
                lines = prose.splitlines()
                shown = "\n".join(lines[:6]) + ("\n…" if len(lines) > 6 else "")
                body.append(f'<div class="prose">{_e(shown)}</div>')
            body.append(
                f'<details class="root-reply"><summary>Root reply · {_e(root["model"])} · '
                f"{_plural(root['code_blocks'], 'code block')} · {_secs(root['elapsed_s'])}"
                f'</summary><pre class="root-text">{_e(root["text"])}</pre></details>'
            )
        else:
            body.append('<p class="pending">No root reply recorded.</p>')
        body += [self._cell(cell, prefix) for cell in node["cells"]]
        if node["retries"]:
            items = "".join(
                f"<li>{_e(r['purpose'])} call to {_e(r['model'])}: attempt {_e(r['attempt'])}, "
                f"retried after {_secs(r['delay_s'])}: {_e(r['reason'])}</li>"
                for r in node["retries"]
            )
            body.append(f'<ul class="retries">{items}</ul>')
        if node["final"] is not None:
            body.append(
                f'<div class="final">Final answer (from {_e(node["final"]["source"])}):'
                f"<pre>{_e(node['final']['answer'])}</pre></div>"
            )
        return (
            f'<details class="iteration" id="{prefix}iteration-{node["iteration"]}" '
            f'data-iteration="{node["iteration"]}" open><summary>{" · ".join(bits)}</summary>'
            f'<div class="body">{"".join(body)}</div></details>'
        )

    def _cell(self, cell: Doc, prefix: str) -> str:
        status = cell["status"]
        bits = [
            f'<span class="label">Cell {cell["cell"]}</span>',
            f'<span class="badge status-{_e(status)}">{_e(status.replace("_", " "))}</span>',
            _secs(cell["elapsed_s"]),
        ]
        if cell["output_chars"] is not None:
            bits.append(f"{cell['output_chars']:,} chars out")
        if cell["subcalls"]:
            bits.append(_plural(len(cell["subcalls"]), "sub-call"))
        if cell["worker_restarted"]:
            bits.append("worker restarted")
        body = [f'<pre class="code python">{highlight_python(cell["code"])}</pre>']
        if cell["output"] is not None:
            output = cell["output"] or "(no output)"
            body.append(f'<pre class="output">{_e(output)}</pre>')
        else:
            body.append('<p class="pending">The cell had not finished when the trace ends.</p>')
        batches = {b["batch_id"]: b for b in cell["batches"]}
        grouped: dict[int, list[Doc]] = {}
        for call in cell["subcalls"]:
            if call["batch_id"] is not None:
                grouped.setdefault(call["batch_id"], []).append(call)
            else:
                body.append(self._subcall(call, prefix))
        for batch_id, calls in grouped.items():
            body.append(self._batch(batches[batch_id], calls, prefix))
        body += [self._run(child) for child in cell["children"]]
        return (
            f'<details class="cell" data-status="{_e(status)}" id="{prefix}cell-{cell["cell"]}" '
            f'data-cell="{cell["cell"]}" open><summary>{" · ".join(bits)}</summary>'
            f'<div class="body">{"".join(body)}</div></details>'
        )

    def _batch(self, batch: Doc, calls: list[Doc], prefix: str) -> str:
        timed = [c for c in calls if c["elapsed_s"] is not None]
        slowest = max(timed, key=lambda c: c["elapsed_s"]) if timed else None
        tokens_in = sum(c["usage"]["input_tokens"] for c in calls)
        bits = [
            f'<span class="label">Batch {batch["batch_id"]}</span>',
            f"{batch['size']:,} prompts",
            f"{batch['done']:,} done",
        ]
        if batch["failed"]:
            bits.append(f'<span class="badge status-error">{batch["failed"]:,} failed</span>')
        if batch["done"] < batch["size"]:
            bits.append(f"{batch['size'] - batch['done']:,} unfinished")
        bits.append(f"{_tokens(tokens_in)} in")
        if slowest is not None:
            bits.append(f"slowest #{slowest['subcall_id']} {_secs(slowest['elapsed_s'])}")
        items = "".join(self._subcall(call, prefix) for call in calls)
        return (
            f'<details class="batch" id="{prefix}batch-{batch["batch_id"]}" '
            f'data-batch="{batch["batch_id"]}"><summary>{" · ".join(bits)}</summary>'
            f'<div class="body">{items}</div></details>'
        )

    def _subcall(self, call: Doc, prefix: str) -> str:
        element = f"{prefix}subcall-{call['subcall_id']}"
        self.ids[id(call)] = element
        status = call["status"]
        usage = call["usage"]
        bits = [
            f'<span class="label">#{call["subcall_id"]}</span>',
            f"<code>{_e(call['model'])}</code>",
            f'<span class="preview">{_e(_preview(_prompt_text(call["prompt"])))}</span>',
        ]
        if status == "ok":
            bits.append(
                f"{_tokens(usage['input_tokens'])} in / {_tokens(usage['output_tokens'])} out"
            )
            if usage["cached_input_tokens"]:
                bits.append(f"{_tokens(usage['cached_input_tokens'])} cached")
        else:
            bits.append(f'<span class="badge status-{_e(status)}">{_e(status)}</span>')
        bits.append(_secs(call["elapsed_s"]))
        prompt = call["prompt"]
        if isinstance(prompt, dict):
            cut = (
                int(prompt.get("length", 0))
                - len(str(prompt.get("head", "")))
                - len(str(prompt.get("tail", "")))
            )
            prompt_html = (
                f'{_e(prompt.get("head"))}<span class="cut">\n[… {cut:,} characters not '
                f"kept in the trace; sha256 {_e(prompt.get('sha256'))} …]\n</span>"
                f"{_e(prompt.get('tail'))}"
            )
        else:
            prompt_html = _e(prompt)
        body = [
            f"<h4>Prompt ({_tokens(call['prompt_chars'])} chars)</h4>"
            f'<pre class="prompt">{prompt_html}</pre>'
        ]
        if call["error"]:
            body.append(f'<h4>Error</h4><pre class="error">{_e(call["error"])}</pre>')
        elif call["reply"] is not None:
            body.append(f'<h4>Reply</h4><pre class="reply">{_e(call["reply"])}</pre>')
        else:
            body.append('<p class="pending">No reply when the trace ends.</p>')
        return (
            f'<details class="subcall" data-status="{_e(status)}" id="{_e(element)}" '
            f'data-subcall="{call["subcall_id"]}"><summary>{" · ".join(bits)}</summary>'
            f'<div class="body">{"".join(body)}</div></details>'
        )


_CSS = """
:root { --fg: #1d2125; --muted: #667; --bg: #fff; --panel: #f5f6f8; --line: #d8dbe0;
  --ok: #2e7d32; --err: #c62828; --warn: #b26a00; --bar: #3f6fd8; --band: #eef1f7; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e4e6ea; --muted: #9aa; --bg: #16181c; --panel: #1f2228; --line: #353a43;
    --ok: #66bb6a; --err: #ef5350; --warn: #ffb74d; --bar: #7aa2ff; --band: #23272f; }
}
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg);
  margin: 0 auto; padding: 1rem 1.5rem 3rem; max-width: 1200px; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
h4 { margin: .5rem 0 .2rem; font-size: .85rem; color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; white-space: pre-wrap; }
pre, code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 4px;
  padding: .5rem .7rem; overflow-x: auto; white-space: pre-wrap; word-break: break-word;
  max-height: 32rem; overflow-y: auto; margin: .3rem 0; }
.answer { font-size: 14px; border-color: var(--ok); } .none { color: var(--muted); }
.warn { color: var(--warn); } .error, pre.error { color: var(--err); }
.status-ok { color: var(--ok); } .status-error, .status-timed_out { color: var(--err); }
.status-incomplete, .status-unfinished, .status-max_iterations, .status-interrupted {
  color: var(--warn); }
.badge { font-size: .8em; border: 1px solid currentColor; border-radius: 3px; padding: 0 .3em; }
.badge.final { color: var(--ok); }
.label { font-weight: 600; }
.controls { margin: 1rem 0; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: .2rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tfoot th, tfoot td { font-weight: 600; border-top: 2px solid var(--line); }
#by-model { color: var(--muted); margin: .4rem 0; }
details { border-left: 2px solid var(--line); margin: .3rem 0 .3rem .2rem; padding-left: .7rem; }
details > summary { cursor: pointer; padding: .1rem 0; }
details.subcall > summary, details.batch > summary { color: var(--fg); }
details.run { border-left-color: var(--bar); }
details.iteration > summary { font-size: 1.02em; }
details.flash > summary { background: var(--band); }
.prose { color: var(--muted); white-space: pre-wrap; margin: .2rem 0; }
.preview { color: var(--muted); }
.pending { color: var(--warn); }
.cut { color: var(--warn); }
.caption { color: var(--muted); margin: .2rem 0 .5rem; }
.timeline-scroll { overflow-x: auto; border: 1px solid var(--line); border-radius: 4px; }
svg.timeline { display: block; min-width: 600px; }
svg .iteration-band.band-odd { fill: var(--band); } svg .iteration-band.band-even { fill: none; }
svg .band-label, svg .tick-label { fill: var(--muted); font: 9px sans-serif; }
svg .tick { stroke: var(--line); stroke-width: .5; }
svg .subcall-bar { fill: var(--bar); cursor: pointer; }
svg .subcall-bar.status-error { fill: var(--err); }
svg .subcall-bar.status-unfinished { fill: var(--warn); opacity: .7; }
svg .subcall-bar:hover { opacity: .6; }
.code .kw { color: #8959a8; font-weight: 600; } .code .str { color: #718c00; }
.code .num { color: #f5871f; } .code .com { color: #8e908c; font-style: italic; }
.code .bi { color: #3e999f; } .code .def { color: #4271ae; } .code .rlm { color: #c82829; }
@media (prefers-color-scheme: dark) {
  .code .kw { color: #c397d8; } .code .str { color: #b9ca4a; } .code .num { color: #e78c45; }
  .code .com { color: #969896; } .code .bi { color: #70c0b1; } .code .def { color: #7aa6da; }
  .code .rlm { color: #d54e53; }
}
footer { margin-top: 2rem; color: var(--muted); font-size: .85em; }
"""

# Optional comfort; the page reads the same with scripts off. It marks <body data-ready> when it
# has run, so a test can tell the browser executed it.
_JS = """
(function () {
  "use strict";
  function setAll(open) {
    document.querySelectorAll("#tree details").forEach(function (d) { d.open = open; });
  }
  document.querySelectorAll("button[data-action]").forEach(function (b) {
    b.addEventListener("click", function () { setAll(b.dataset.action === "expand"); });
  });
  document.querySelectorAll("rect.subcall-bar").forEach(function (bar) {
    bar.addEventListener("click", function () {
      var node = document.getElementById(bar.dataset.target);
      if (!node) { return; }
      for (var d = node; d; d = d.parentElement) { if (d.tagName === "DETAILS") { d.open = true; } }
      node.classList.add("flash");
      setTimeout(function () { node.classList.remove("flash"); }, 1500);
      node.scrollIntoView({ block: "center" });
    });
  });
  document.body.dataset.ready = "yes";
})();
"""

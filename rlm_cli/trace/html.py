"""The HTML export's page: one self-contained HTML file of a trajectory document.

It needs nothing else to be read: no network, no CDN (a Content-Security-Policy forbids loading
anything), inline CSS and a little inline JavaScript (`assets/page.css`, `assets/page.js`; the page
works without the script), every piece of trace text HTML-escaped. It holds:

- a header: `#question`, `#models`, `#inputs`, `#status`, `#totals`, `#answer` (and `#error`,
  `#partial-note` when they apply);
- `#iteration-table`: tokens and cost per iteration (`tr.iteration-row`), totals in `#usage-total`;
- `#timeline`: an inline SVG with one `rect.subcall-bar` per sub-call from its start to its finish,
  in lanes so calls in flight at the same time stack (`data-lanes` is the most at once);
- `#tree`: the run as nested `<details>`: `.run` > `.iteration` > `.cell` > (`.batch` >)
  `.subcall`, with `data-status` on cells and sub-calls, and child runs (`.run.child-run`) under
  the cell that started them. Code is `.code` highlighted by pygments (its short classes: `.k`,
  `.s2`, `.mi`, `.c1`, `.nb`, ...), with `.rlm` on the REPL's own names.

Ids of the main run are `iteration-N`, `cell-N`, `batch-N`, `subcall-N`; a child run's are
prefixed with `RUNID-`, and the child run itself is `run-RUNID`. These ids and classes are kept
stable for tools and tests.
"""

from __future__ import annotations

import functools
from importlib import resources

from rlm_cli.format import format_bytes
from rlm_cli.runmodel.document import Doc
from rlm_cli.trace.highlight import highlight_python
from rlm_cli.trace.markup import (
    cost,
    encodable,
    escape,
    plural,
    preview,
    prompt_text,
    secs,
    tokens,
)
from rlm_cli.trace.timeline import timeline


@functools.cache
def _asset(name: str) -> str:
    """A file of `rlm_cli/trace/assets` (shipped as package data), read once."""
    return resources.files("rlm_cli.trace").joinpath("assets", name).read_text(encoding="utf-8")


class Page:
    """One trajectory document as the page; `render()` is its HTML."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.run: Doc = doc["run"]
        # Element id of each sub-call node, by the node's identity, for the timeline's links.
        self.ids: dict[int, str] = {}

    def render(self) -> str:
        tree = self._run(self.run, main=True)  # first: it assigns the ids the timeline links to
        question = preview(self.doc.get("question"), 80) or "rlm run"
        return "".join(
            [
                '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
                # Belt and braces for "no network": the page may load nothing from anywhere.
                '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
                "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n",
                '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
                f"<title>rlm · {escape(question)}</title>\n<style>{_asset('page.css')}</style>\n</head>\n<body>\n",
                self._header(),
                '<nav class="controls"><button type="button" data-action="expand">Expand all'
                '</button> <button type="button" data-action="collapse">Collapse all</button>'
                "</nav>\n",
                self._table(),
                timeline(self.run, self.ids),
                f'<section id="tree"><h2>Trajectory</h2>{tree}</section>\n',
                self._footer(),
                f"<script>{_asset('page.js')}</script>\n</body>\n</html>\n",
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
            f"{plural(int(inputs.get('files', 0) or 0), 'input')} · "
            f"{format_bytes(int(inputs.get('bytes') or 0))} · ~{tokens(inputs.get('estimated_tokens'))} "
            f"tokens{' · ' + shown if shown else ''}"
            if inputs
            else "none recorded"
        )
        usage = run["usage"]
        totals = (
            f"{plural(run['counts']['iterations'], 'iteration')} · "
            f"{plural(run['counts']['subcalls'], 'sub-call')} · "
            f"{tokens(usage.get('input_tokens'))} in / {tokens(usage.get('output_tokens'))} out "
            f"tokens · {cost(usage.get('cost_usd'))} · {secs(run['elapsed_s'])}"
        )
        failed = int(run.get("subcalls_failed") or 0)
        if failed:  # the work the answer does not rest on, as the CLI's summary line says it
            kinds = ", ".join(
                f"{kind} {count}"
                for kind, count in sorted(
                    (run.get("failures") or {}).items(), key=lambda kv: -kv[1]
                )
            )
            totals += f" · {plural(failed, 'sub-call')} failed" + (f" ({kinds})" if kinds else "")
        if run["answer"] is not None:
            answer = f'<pre id="answer" class="answer">{escape(run["answer"])}</pre>'
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
            notes.append(f'<p id="error" class="error">{escape(run["error"])}</p>')
        return (
            '<header id="summary"><h1>rlm run</h1><dl>'
            f'<dt>Question</dt><dd id="question">{escape(doc.get("question"))}</dd>'
            f'<dt>Models</dt><dd id="models">root <code>{escape(run["root_model"])}</code> · '
            f"worker <code>{escape(run['sub_model'])}</code></dd>"
            f'<dt>Inputs</dt><dd id="inputs">{escape(input_line)}</dd>'
            f'<dt>Status</dt><dd id="status" class="status status-{escape(status)}">{escape(status)}</dd>'
            f'<dt>Totals</dt><dd id="totals">{escape(totals)}</dd></dl>'
            f"{''.join(notes)}<h2>Answer</h2>{answer}</header>\n"
        )

    def _footer(self) -> str:
        trace = self.doc["trace"]
        return (
            f"<footer><p>From <code>{escape(trace['path'])}</code> · trace format "
            f"{escape(trace['format_version'])} · written by rlm {escape(trace['rlm_version'])}"
            f"{' · run ' + escape(self.run['run_id']) if self.run['run_id'] else ''}</p></footer>\n"
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
                f"<td>{tokens(root.get('input_tokens'))}</td>"
                f"<td>{tokens(root.get('output_tokens'))}</td>"
                f"<td>{tokens(total['cached_input_tokens'])}</td>"
                f"<td>{node['subcalls']:,}</td>"
                f"<td>{tokens(sub['input_tokens'])}</td><td>{tokens(sub['output_tokens'])}</td>"
                f"<td>{tokens(total['input_tokens'] + total['output_tokens'])}</td>"
                f"<td>{cost(total['cost_usd'])}</td><td>{secs(node['elapsed_s'])}</td></tr>"
            )
        usage = self.run["usage"]
        by_model = usage.get("by_model") or {}
        root_model, sub_model = self.run["root_model"], self.run["sub_model"]
        root = by_model.get(root_model, {})
        sub = by_model.get(sub_model, {}) if sub_model != root_model else {}
        foot = (
            '<tr id="usage-total"><th>Total</th>'
            f"<td>{tokens(root.get('input_tokens'))}</td>"
            f"<td>{tokens(root.get('output_tokens'))}</td>"
            f"<td>{tokens(usage.get('cached_input_tokens'))}</td>"
            f"<td>{self.run['counts']['subcalls']:,}</td>"
            f"<td>{tokens(sub.get('input_tokens'))}</td><td>{tokens(sub.get('output_tokens'))}</td>"
            f"<td>{tokens(int(usage.get('input_tokens', 0)) + int(usage.get('output_tokens', 0)))}"
            f"</td><td>{cost(usage.get('cost_usd'))}</td><td>{secs(self.run['elapsed_s'])}</td>"
            "</tr>"
        )
        models = "".join(
            f"<li><code>{escape(model)}</code>: {plural(int(t.get('calls', 0)), 'call')}, "
            f"{tokens(t.get('input_tokens'))} in / {tokens(t.get('output_tokens'))} out, "
            f"{cost(t.get('cost_usd'))}</li>"
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
            f'<span class="label">Run {escape(run["run_id"] or "")}</span> '
            f'<span class="badge status-{escape(run["status"])}">{escape(run["status"])}</span> · '
            f"{plural(run['counts']['iterations'], 'iteration')} · "
            f"{plural(run['counts']['subcalls'], 'sub-call')} · "
            f"{tokens(usage.get('input_tokens'))} in / {tokens(usage.get('output_tokens'))} out · "
            f"{cost(usage.get('cost_usd'))} · {secs(run['elapsed_s'])}"
        )
        body = []
        if not main:
            body.append(
                f'<p class="child-question">depth {escape(run["depth"])} · question: '
                f"{escape(run['question'])} · answer: {escape(run['answer'])}</p>"
            )
        body += [self._iteration(node, prefix) for node in run["iterations"]]
        body += [self._run(child) for child in run["children"]]
        classes = "run" if main else "run child-run"
        anchor = "" if main else f' id="run-{escape(run["run_id"])}"'
        return (
            f'<details class="{classes}"{anchor} data-run="{escape(run["run_id"] or "")}" open>'
            f'<summary>{summary}</summary><div class="body">{"".join(body)}</div></details>'
        )

    def _iteration(self, node: Doc, prefix: str) -> str:
        root = node["root"]
        bits = [f'<span class="label">Iteration {node["iteration"]}</span>']
        if node["last_turn"]:
            bits.append("last turn")
        if root is not None:
            bits.append(
                f"root {tokens(root['usage']['input_tokens'])} in / "
                f"{tokens(root['usage']['output_tokens'])} out"
            )
        bits.append(plural(len(node["cells"]), "cell"))
        if node["subcalls"]:
            bits.append(plural(node["subcalls"], "sub-call"))
        bits.append(cost(node["usage"]["cost_usd"]))
        bits.append(secs(node["elapsed_s"]))
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
                body.append(f'<div class="prose">{escape(shown)}</div>')
            body.append(
                f'<details class="root-reply"><summary>Root reply · {escape(root["model"])} · '
                f"{plural(root['code_blocks'], 'code block')} · {secs(root['elapsed_s'])}"
                f'</summary><pre class="root-text">{escape(root["text"])}</pre></details>'
            )
        else:
            body.append('<p class="pending">No root reply recorded.</p>')
        body += [self._cell(cell, prefix) for cell in node["cells"]]
        if node["retries"]:
            items = "".join(
                f"<li>{escape(r['purpose'])} call to {escape(r['model'])}: attempt {escape(r['attempt'])}, "
                f"retried after {secs(r['delay_s'])}: {escape(r['reason'])}</li>"
                for r in node["retries"]
            )
            body.append(f'<ul class="retries">{items}</ul>')
        if node["final"] is not None:
            body.append(
                f'<div class="final">Final answer (from {escape(node["final"]["source"])}):'
                f"<pre>{escape(node['final']['answer'])}</pre></div>"
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
            f'<span class="badge status-{escape(status)}">{escape(status.replace("_", " "))}</span>',
            secs(cell["elapsed_s"]),
        ]
        if cell["output_chars"] is not None:
            bits.append(f"{cell['output_chars']:,} chars out")
        if cell["subcalls"]:
            bits.append(plural(len(cell["subcalls"]), "sub-call"))
        if cell["worker_restarted"]:
            bits.append("worker restarted")
        code = highlight_python(encodable(cell["code"], "replace"))
        body = [f'<pre class="code python">{code}</pre>']
        if cell["output"] is not None:
            output = cell["output"] or "(no output)"
            body.append(f'<pre class="output">{escape(output)}</pre>')
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
            f'<details class="cell" data-status="{escape(status)}" id="{prefix}cell-{cell["cell"]}" '
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
        bits.append(f"{tokens(tokens_in)} in")
        if slowest is not None:
            bits.append(f"slowest #{slowest['subcall_id']} {secs(slowest['elapsed_s'])}")
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
            f"<code>{escape(call['model'])}</code>",
            f'<span class="preview">{escape(preview(prompt_text(call["prompt"])))}</span>',
        ]
        if status == "ok":
            bits.append(
                f"{tokens(usage['input_tokens'])} in / {tokens(usage['output_tokens'])} out"
            )
            if usage["cached_input_tokens"]:
                bits.append(f"{tokens(usage['cached_input_tokens'])} cached")
        else:
            bits.append(f'<span class="badge status-{escape(status)}">{escape(status)}</span>')
        bits.append(secs(call["elapsed_s"]))
        prompt = call["prompt"]
        if isinstance(prompt, dict):
            cut = (
                int(prompt.get("length", 0))
                - len(str(prompt.get("head", "")))
                - len(str(prompt.get("tail", "")))
            )
            prompt_html = (
                f'{escape(prompt.get("head"))}<span class="cut">\n[… {cut:,} characters not '
                f"kept in the trace; sha256 {escape(prompt.get('sha256'))} …]\n</span>"
                f"{escape(prompt.get('tail'))}"
            )
        else:
            prompt_html = escape(prompt)
        body = [
            f"<h4>Prompt ({tokens(call['prompt_chars'])} chars)</h4>"
            f'<pre class="prompt">{prompt_html}</pre>'
        ]
        if call["error"]:
            body.append(f'<h4>Error</h4><pre class="error">{escape(call["error"])}</pre>')
        elif call["reply"] is not None:
            body.append(f'<h4>Reply</h4><pre class="reply">{escape(call["reply"])}</pre>')
        else:
            body.append('<p class="pending">No reply when the trace ends.</p>')
        return (
            f'<details class="subcall" data-status="{escape(status)}" id="{escape(element)}" '
            f'data-subcall="{call["subcall_id"]}"><summary>{" · ".join(bits)}</summary>'
            f'<div class="body">{"".join(body)}</div></details>'
        )

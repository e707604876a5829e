"""The HTML export's sub-call timeline: one inline SVG bar per sub-call, stacked in lanes.

`timeline(run, ids)` is the `#timeline` section of the page: a `rect.subcall-bar` per sub-call
from its start to its finish, linked to its node in the tree (`ids`, by the node's identity), on
shaded bands for the iterations; `data-lanes` is the most calls in flight at one time.
"""

from __future__ import annotations

import math

from rlm_cli.runmodel.document import Doc
from rlm_cli.trace.markup import escape, plural, preview, prompt_text, secs
from rlm_cli.trace.reader import iter_subcalls

_WIDTH = 1000
_LANE = 10
_GAP = 3
_AXIS = 30


def lanes(spans: list[tuple[float, float]]) -> tuple[list[int], int]:
    """A lane for each (start, end) span so spans in one lane never overlap, in as few lanes as
    possible (greedy by start time, which is optimal for intervals): the lane count is the most
    spans in flight at one time."""
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    ends: list[float] = []
    chosen = [0] * len(spans)
    for index in order:
        start, end = spans[index]
        for lane, lane_end in enumerate(ends):
            if lane_end <= start:
                ends[lane] = end
                chosen[index] = lane
                break
        else:
            chosen[index] = len(ends)
            ends.append(end)
    return chosen, len(ends)


def tick_step(span: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about six ticks over `span`."""
    raw = span / 6
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def timeline(run: Doc, ids: dict[int, str]) -> str:
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
    lane_of, count = lanes(spans)

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
    step = tick_step(span)
    ticks = int(span / step) + 1
    for k in range(ticks):
        at = k * step
        parts.append(
            f'<line class="tick" x1="{x(t0 + at):.2f}" x2="{x(t0 + at):.2f}" y1="0" y2="{height}"/>'
            f'<text class="tick-label" x="{x(t0 + at) + 2:.2f}" y="10">{_axis_label(at, step)}</text>'
        )
    for call, (start, end), lane in zip(calls, spans, lane_of, strict=True):
        left = x(start)
        width = max(x(end) - left, 1.5)  # an instant call still shows
        y = _AXIS + lane * (_LANE + _GAP)
        target = ids.get(id(call), "")
        tip = (
            f"#{call['subcall_id']} · {call['model']} · {call['status']} · "
            f"{secs(call['elapsed_s'])} · from {start - t0:.3f} s · "
            f"{preview(prompt_text(call['prompt']), 80)}"
        )
        parts.append(
            f'<rect class="subcall-bar status-{escape(call["status"])}" x="{left:.2f}" y="{y}" '
            f'width="{width:.2f}" height="{_LANE}" data-target="{escape(target)}" '
            f'data-subcall="{call["subcall_id"]}" data-lane="{lane}"><title>{escape(tip)}</title></rect>'
        )
    parts.append("</svg>")
    caption = (
        f"{plural(len(calls), 'sub-call')} over {secs(t1 - t0)} · at most {count:,} in flight "
        "at once · shaded bands are iterations; a bar opens its sub-call below"
    )
    return (
        f'<section id="timeline" data-lanes="{count}" data-subcalls="{len(calls)}">'
        f'<h2>Sub-call timeline</h2><p class="caption">{escape(caption)}</p>'
        f'<div class="timeline-scroll">{"".join(parts)}</div></section>'
    )


def _axis_label(at: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{at:.{decimals}f} s"

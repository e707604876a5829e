"""The one run model: the live tree and the trace exports read one fold, so they agree.

One event stream (a batch with a failure and a retry, a child run started by rlm_query, a root
retry, a long prompt) goes to the live view's model as it would during the run, and through the
real trace writer to `trajectory` and `rlm trace show`'s model. Placement, counts and cost must be
the same everywhere; only what the live view keeps of text and batches differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlm_cli.events import (
    AnyEvent,
    CellFinished,
    CellStarted,
    FinalAnswer,
    IterationStarted,
    Retry,
    RootReply,
    RunFinished,
    RunStarted,
    SubcallFinished,
    SubcallStarted,
)
from rlm_cli.runmodel import BATCH_SHOWN, Batch, Run, Subcall, Tally, add_cost
from rlm_cli.trace.reader import fold_trace, iter_runs, iter_subcalls, load_trace, trajectory
from rlm_cli.trace.writer import PROMPT_KEEP, TraceWriter
from rlm_cli.ui.model import PREVIEW_KEPT, SHOWN, RunTree

USAGE = {"input_tokens": 100, "output_tokens": 10}
LONG_PROMPT = "x" * 5_000
BATCH = 6


def started(run_id: str, ts: float, **fields: Any) -> RunStarted:
    return RunStarted(
        run_id,
        question=f"question of {run_id}",
        root_model="R",
        sub_model="W",
        inputs={},
        context_meta={},
        settings={"max_iterations": 5},
        ts=ts,
        **fields,
    )


def reply(run_id: str, iteration: int, ts: float, cost: float | None) -> RootReply:
    return RootReply(
        run_id,
        iteration=iteration,
        text="```repl\nx\n```",
        model="R",
        usage=USAGE,
        elapsed_s=0.1,
        code_blocks=1,
        ts=ts,
        cost_usd=cost,
    )


def call(run_id: str, sid: int, ts: float, cost: float | None, **fields: Any) -> list[AnyEvent]:
    batch = {k: fields[k] for k in ("batch_id",) if k in fields}
    error = fields.get("error")
    return [
        SubcallStarted(
            run_id,
            subcall_id=sid,
            cell=1,
            model="W",
            prompt=fields.get("prompt", f"prompt {sid}"),
            batch_size=fields.get("batch_size", 1),
            ts=ts,
            **batch,
        ),
        SubcallFinished(
            run_id,
            subcall_id=sid,
            cell=1,
            model="W",
            reply="" if error else f"reply {sid}",
            usage={} if error else USAGE,
            elapsed_s=0.05 * sid,
            error=error,
            ts=ts + 0.05 * sid,
            cost_usd=None if error else cost,
            **batch,
        ),
    ]


def cell(
    run_id: str, iteration: int, number: int, ts: float, body: list[AnyEvent]
) -> list[AnyEvent]:
    return [
        CellStarted(run_id, iteration=iteration, cell=number, code="x", ts=ts),
        *body,
        CellFinished(
            run_id,
            iteration=iteration,
            cell=number,
            output="done\n",
            output_chars=5,
            error=False,
            elapsed_s=1.0,
            ts=ts + 1.0,
        ),
    ]


def finished(run_id: str, ts: float, subcalls: int, failed: int) -> RunFinished:
    return RunFinished(
        run_id,
        status="ok",
        answer=f"answer of {run_id}",
        iterations=1,
        subcalls=subcalls,
        usage={},  # no summary totals: the exports sum the calls, as the live view does
        elapsed_s=ts - 100.0,
        subcalls_failed=failed,
        ts=ts,
    )


def stream(sub_cost: float | None) -> list[AnyEvent]:
    """A top run whose first cell runs a batch (one item fails, one is retried), one call with a
    long prompt, and a child run (rlm_query) with a sub-call of its own."""
    batch: list[AnyEvent] = []
    for k in range(BATCH):
        error = "provider: 500" if k == 2 else None
        batch += call("top", k + 1, 100.3, sub_cost, batch_id=1, batch_size=BATCH, error=error)
    # The batch's calls start together and finish in turn: the retry lands while all are out.
    starts = [e for e in batch if isinstance(e, SubcallStarted)]
    ends = [e for e in batch if isinstance(e, SubcallFinished)]
    retry = Retry("top", purpose="sub", model="W", attempt=1, delay_s=0.5, reason="429", ts=100.31)
    child = [
        started("kid", 101.0, depth=1, parent_run_id="top", parent_cell=1),
        IterationStarted("kid", iteration=1, max_iterations=3, ts=101.0),
        reply("kid", 1, 101.1, 0.002),
        *cell("kid", 1, 1, 101.1, call("kid", 7, 101.2, sub_cost)),
        FinalAnswer("kid", iteration=1, answer="answer of kid", source="FINAL", ts=101.5),
        finished("kid", 101.5, 1, 0),
    ]
    long = call("top", 8, 101.6, sub_cost, prompt=LONG_PROMPT)
    return [
        started("top", 100.0, summary="inputs: 1 file · 5 B · ~2 tokens"),
        IterationStarted("top", iteration=1, max_iterations=5, ts=100.0),
        Retry("top", purpose="root", model="R", attempt=1, delay_s=0.1, reason="timeout", ts=100.1),
        reply("top", 1, 100.2, 0.001),
        *cell("top", 1, 1, 100.2, [*starts, retry, *ends, *child, *long]),
        IterationStarted("top", iteration=2, max_iterations=5, ts=102.0),
        reply("top", 2, 102.1, 0.001),
        FinalAnswer("top", iteration=2, answer="answer of top", source="FINAL", ts=102.2),
        finished("top", 102.2, BATCH + 2, 1),
    ]


def written(path: Path, events: list[AnyEvent]) -> Path:
    writer = TraceWriter(str(path))
    writer.header("question of top", {"root_model": "R", "worker_model": "W"}, None)
    for event in events:
        writer(event)
    writer.close()
    return path


def live(events: list[AnyEvent]) -> RunTree:
    run = RunTree()
    for event in events:
        run.apply(event)
    return run


def doc_cost(run: dict[str, Any]) -> float | None:
    total: float | None = 0.0
    for each in iter_runs(run):
        for node in each["iterations"]:
            total = add_cost(total, node["usage"]["cost_usd"])
    return total


@pytest.mark.parametrize("sub_cost", [0.0005, None])
def test_live_tree_and_exports_agree(tmp_path: Path, sub_cost: float | None) -> None:
    events = stream(sub_cost)
    tree = live(events)
    trace = load_trace(written(tmp_path / "t.jsonl", events))
    doc = trajectory(trace)["run"]
    shown = fold_trace(trace, SHOWN)  # what `rlm trace show` draws

    for run in (tree, shown):
        # Placement: the child run sits under the cell that started it, in every view.
        first = run.iterations[0].cells[0]
        (kid,) = first.runs()
        assert kid.run_id == "kid" and kid.parent_cell == 1 and kid.answer == "answer of kid"
        assert [r.run_id for r in run.descendants()] == [r["run_id"] for r in iter_runs(doc)]
        # Counts: sub-calls, failures and retries, per iteration and in all.
        for node, doc_node in zip(run.iterations, doc["iterations"], strict=True):
            assert node.subcalls == doc_node["subcalls"]
            assert len(node.retries) == len(doc_node["retries"])
        (batch,) = first.batches()
        assert [
            {
                "batch_id": batch.batch_id,
                "size": batch.size,
                "done": batch.done,
                "failed": batch.failed,
            }
        ] == doc["iterations"][0]["cells"][0]["batches"]
        assert batch.retries == 1 and run.iterations[0].root_retries == 1
        totals = run.totals()
        assert totals.subcalls_done == len(list(iter_subcalls(doc))) == BATCH + 2
        failed = [c for c in iter_subcalls(doc) if c["status"] == "error"]
        assert totals.subcalls_failed == len(failed) == 1 == doc["subcalls_failed"]
        assert run.retries == doc["counts"]["retries"] == 2
        # Cost: one rule (an unknown price poisons the sum), so one figure everywhere.
        assert totals.cost_usd == doc_cost(doc)
        assert totals.input_tokens == sum(
            n["usage"]["input_tokens"] for r in iter_runs(doc) for n in r["iterations"]
        )
    if sub_cost is None:
        assert tree.totals().cost_usd is None and doc["usage"]["cost_usd"] is None
    else:
        assert tree.totals().cost_usd == pytest.approx(0.001 * 2 + 0.002 + 8 * sub_cost - sub_cost)


def test_the_live_view_keeps_less_and_draws_the_same(tmp_path: Path) -> None:
    """Previews and the batch items shown, against everything: the batch's slowest and failed
    items are the same ones either way."""
    events = stream(0.0005)
    tree = live(events)
    shown = fold_trace(load_trace(written(tmp_path / "t.jsonl", events)), SHOWN)
    live_batch, full_batch = (r.iterations[0].cells[0].batches()[0] for r in (tree, shown))
    assert len(live_batch.calls) < BATCH == len(full_batch.calls)
    assert len(live_batch.calls) <= 2 * BATCH_SHOWN
    for pick in ("slowest", "failures"):
        ids = [[c.subcall_id for c in getattr(b, pick)] for b in (live_batch, full_batch)]
        assert ids[0] == ids[1], pick
    assert [c.subcall_id for c in live_batch.slowest] == [6, 5, 4]  # slowest first
    (long_live,) = [c for c in tree.iterations[0].cells[0].children if isinstance(c, Subcall)]
    assert len(long_live.prompt) == PREVIEW_KEPT and long_live.prompt_chars == len(LONG_PROMPT)
    (long_doc,) = [c for c in iter_subcalls(trajectory(load_trace(tmp_path / "t.jsonl"))["run"])
                   if c["subcall_id"] == 8]  # fmt: skip
    assert long_doc["prompt_shortened"] and long_doc["prompt"]["length"] == len(LONG_PROMPT)
    assert len(long_doc["prompt"]["head"]) == PROMPT_KEEP // 2


def test_a_child_run_without_its_cell_is_placed_by_time_then_under_its_parent() -> None:
    run = Run()
    for event in [
        started("top", 100.0),
        IterationStarted("top", iteration=1, max_iterations=5, ts=100.0),
        CellStarted("top", iteration=1, cell=1, code="x", ts=100.1),
        started("a", 100.5, depth=1, parent_run_id="top"),  # cell 1 is running
        CellFinished(
            "top", iteration=1, cell=1, output="", output_chars=0, error=False, elapsed_s=1.0,
            ts=101.0,
        ),
        started("b", 102.0, depth=1, parent_run_id="top"),  # no cell is running
        started("c", 102.1, depth=2, parent_run_id="b", parent_cell=9),  # no such cell
    ]:  # fmt: skip
        run.apply(event)
    (a,) = run.iterations[0].cells[0].runs()
    assert a.run_id == "a" and a.parent_cell == 1
    assert [r.run_id for r in run.children] == ["b"]
    assert [r.run_id for r in run.children[0].children] == ["c"]


def test_unknown_cost_poisons_the_sum() -> None:
    assert add_cost(0.5, 0.25) == 0.75
    assert add_cost(None, 0.25) is None and add_cost(0.5, None) is None
    total = Tally()
    total.add(Tally.of_call(USAGE, 0.01, failed=False))
    total.add(Tally.of_call({}, None, failed=True))  # a failed call was not billed: 0, known
    assert total.cost_usd == 0.01 and total.calls == 1
    total.add(Tally.of_call(USAGE, None, failed=False))
    assert total.cost_usd is None and total.calls == 2 and total.input_tokens == 200


def test_a_batch_kept_for_a_live_view_holds_only_what_it_shows() -> None:
    batch = Batch(1, size=1_000, model="W", started=0.0, keep=BATCH_SHOWN)
    for k in range(1_000):
        item = Subcall(k, 1, "W", "p", 0.0)
        batch.started_call(item)
        item.elapsed_s, item.finished_at = float(k % 17), float(k)
        item.error = "boom" if k % 10 == 0 else None
        batch.finished(item)
    assert batch.done == 1_000 and batch.failed == 100
    assert len(batch.calls) <= 2 * BATCH_SHOWN
    assert [c.elapsed_s for c in batch.slowest] == [16.0, 16.0, 16.0]
    assert [c.subcall_id for c in batch.failures] == [0, 10, 20]

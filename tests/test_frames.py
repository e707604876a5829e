"""The host's check of the worker's frames (rlm_cli.sandbox.frames): a forged frame is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rlm_cli.sandbox import frames
from rlm_cli.sandbox.frames import BadFrame
from rlm_cli.sandbox.worker.protocol import LAYERS

QUERY = {
    "type": "query",
    "id": 1,
    "prompts": ["a"],
    "model": None,
    "batched": False,
    "kind": "llm",
    "contexts": None,
}
RESULT = {
    "type": "result",
    "id": 3,
    "output": "",
    "output_chars": 0,
    "error": False,
    "interrupted": False,
    "final": "x",
    "final_source": "FINAL",
}


def test_good_frames_pass() -> None:
    assert frames.query(dict(QUERY))["prompts"] == ["a"]
    assert frames.result(dict(RESULT), 3)["final"] == "x"


@pytest.mark.parametrize(
    "change",
    [
        {"id": -1},
        {"id": True},
        {"id": "1"},
        {"prompts": []},
        {"prompts": "a"},
        {"prompts": [1]},
        {"model": 3},
        {"batched": 1},
        {"kind": "shell"},
        {"contexts": [1, 2]},
        {"extra": 1},
    ],
)
def test_a_malformed_query_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(BadFrame):
        frames.query({**QUERY, **change})


@pytest.mark.parametrize(
    "change",
    [
        {"id": 2},  # another cell's
        {"output": None},
        {"error": "no"},
        {"final": None},  # final_source says there is one
        {"final_source": "forged"},
        {"final": 3},
    ],
)
def test_a_malformed_result_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(BadFrame):
        frames.result({**RESULT, **change}, 3)


def test_a_result_when_no_cell_runs_is_refused() -> None:
    with pytest.raises(BadFrame):
        frames.result(dict(RESULT), None)


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"type": 1}', b"[" * 100_000])
def test_garbage_is_refused(body: bytes) -> None:
    with pytest.raises(BadFrame):
        frames.parse(body)


def test_a_layer_left_out_of_the_report_counts_as_inactive() -> None:
    report = frames.layers({"namespaces": {"active": True, "detail": "ok"}, "bogus": {}})
    assert list(report) == list(LAYERS)
    assert report["namespaces"]["active"] and not report["landlock"]["active"]


def test_the_weight_of_a_frame_bounds_what_parsing_it_takes() -> None:
    """3 bytes of `[],` parse into a 64-byte list: such frames are weighed before they are
    parsed, and brackets inside strings are not counted as objects."""
    import sys

    nested = ("[" + ",".join(["[]"] * 100_000) + "]").encode()
    parsed = json.loads(nested)
    actual = sys.getsizeof(parsed) + sum(sys.getsizeof(item) for item in parsed)
    assert frames.weight(nested) >= actual
    text = json.dumps({"prompts": ["[], " * 100_000]}).encode()
    assert frames.weight(text) < 5 * len(text)

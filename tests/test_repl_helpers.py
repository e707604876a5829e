"""The REPL helpers (grep, lines, chunks, llm_map) and the syntax-error message, in real worker
processes; llm_map's worker replies come from handlers written here, so dropped, reordered and
chatty lines are under the test's control."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from conftest import invoke_scripted, repl

from rlm_cli import inputs as rlm_inputs
from rlm_cli.sandbox.host import CellResult, QueryRequest, Sandbox
from rlm_cli.sandbox.worker.helpers import instruction_room

Handler = Callable[[QueryRequest], Awaitable[list[str]]]

LOG = "".join(f"line {n} {'ERROR disk' if n % 10 == 0 else 'ok'}\n" for n in range(1, 101))
FILES = {
    "src/a.py": "import os\n\ndef main():\n    raise ERROR\n",
    "src/b.py": "x = 1\r\ny = 2\r\n",
    "README.md": "# title\nan ERROR here\nand ERROR there\n",
}


def cells(
    context: Any,
    code: list[str],
    *,
    on_query: Handler | None = None,
    subcall_chars: int = 100_000,
) -> list[CellResult]:
    """Run `code` cell by cell in one real sandbox holding `context`."""
    import asyncio

    async def no_queries(request: QueryRequest) -> list[str]:
        raise AssertionError("no sub-call expected")

    async def main() -> list[CellResult]:
        sandbox = Sandbox(
            inputs,
            output_limit=50_000,
            on_query=on_query or no_queries,
            subcall_chars=subcall_chars,
        )
        await sandbox.start()
        try:
            return [await sandbox.execute(cell, 30) for cell in code]
        finally:
            await sandbox.close()

    inputs = rlm_inputs.from_value(context)
    try:
        return asyncio.run(main())
    finally:
        inputs.cleanup()


def ok(result: CellResult) -> str:
    assert not result.error, result.output
    return result.output


# ----- grep -----


def test_grep_over_a_str_prints_line_numbers_and_returns_every_hit() -> None:
    shown, capped, counted = cells(
        LOG,
        [
            "hits = grep('ERROR')",
            "hits = grep(r'ERROR', max_hits=3)\nprint(len(hits), hits[0], hits)",
            "grep('line 5[05] ', context=1)",
        ],
    )
    assert ok(shown).splitlines()[:2] == ["10: line 10 ERROR disk", "20: line 20 ERROR disk"]
    assert len(shown.output.splitlines()) == 10
    lines = ok(capped).splitlines()
    assert lines[:3] == [
        "10: line 10 ERROR disk",
        "20: line 20 ERROR disk",
        "30: line 30 ERROR disk",
    ]
    assert lines[3] == "... 7 more hits not shown (max_hits=3); the list grep returned holds all 10"
    assert lines[4] == (
        "10 Hit(name=None, line=10, text='line 10 ERROR disk') "
        "<10 hits: a list of Hit(name, line, text)>"
    )
    # Lines around a hit are marked with "-", groups that do not touch are parted by "--"; a
    # cell ending in grep(...) echoes the summary, not the hits again.
    assert ok(counted).splitlines() == [
        "49- line 49 ok",
        "50: line 50 ERROR disk",
        "51- line 51 ok",
        "--",
        "54- line 54 ok",
        "55: line 55 ok",
        "56- line 56 ok",
        "<2 hits: a list of Hit(name, line, text)>",
    ]


def test_grep_over_a_dict_names_each_file_and_can_search_one() -> None:
    every, one, none, bad = cells(
        FILES,
        [
            "grep('ERROR')",
            "print([tuple(h) for h in grep('^y', 'src/b.py')])",
            "grep('nowhere')",
            "grep('(unclosed')",
        ],
    )
    assert ok(every).splitlines() == [
        "src/a.py:4:     raise ERROR",
        "README.md:2: an ERROR here",
        "README.md:3: and ERROR there",
        "<3 hits in 2 files: a list of Hit(name, line, text)>",
    ]
    assert ok(one).splitlines() == ["src/b.py:2: y = 2", "[('src/b.py', 2, 'y = 2')]"]  # no \r
    assert ok(none).splitlines() == [
        "(grep: no line matches 'nowhere' in 3 files)",
        "<0 hits: a list of Hit(name, line, text)>",
    ]
    assert bad.error
    assert "ValueError: grep: '(unclosed' is not a valid regular expression" in bad.output
    assert '"<cell 4>", line 1' in bad.output
    assert "helpers" not in bad.output and "rlm_cli" not in bad.output  # the helper's frames


# ----- lines -----


def test_lines_shows_a_numbered_window_that_agrees_with_grep() -> None:
    window, tail, short, past = cells(
        LOG,
        [
            "n = grep('line 30 ', max_hits=0)[0].line\nlines(context, n - 1, n + 1)",
            "lines(-2, -1)",
            "lines(context, 99)",
            "lines(context, 200, 210)",
        ],
    )
    assert ok(window).splitlines()[-4:] == [
        "[lines 29-31 of 100]",
        "29: line 29 ok",
        "30: line 30 ERROR disk",
        "31: line 31 ok",
    ]
    assert ok(tail).splitlines() == [
        "[lines 99-100 of 100]",
        "99: line 99 ok",
        "100: line 100 ERROR disk",
    ]
    assert ok(short).splitlines()[0] == "[lines 99-100 of 100]"  # end left out: to the end
    assert ok(past) == "[no lines in 200..210: the text has 100 lines]\n"


def test_lines_of_a_dict_takes_a_file_name() -> None:
    named, unnamed, typo = cells(
        FILES, ["lines('src/a.py', 3, 4)", "lines(1, 2)", "lines('src/c.py', 1, 2)"]
    )
    assert ok(named).splitlines() == [
        "[src/a.py: lines 3-4 of 4]",
        "3: def main():",
        "4:     raise ERROR",
    ]
    assert unnamed.error
    assert "lines: context is a dict of 3 files; name one, e.g. lines('src/a.py', 1, 20)" in (
        unnamed.output
    )
    assert ok(typo).startswith("(lines: no file named 'src/c.py' in context")


# ----- chunks -----


def test_chunks_of_a_str_cut_at_line_ends_under_the_size() -> None:
    text = "short\n" * 30 + "L" * 250 + "\nend\n"
    (result,) = cells(
        text,
        [
            "import json\nparts = chunks(context, 100)\nprint(parts)\n"
            "print(json.dumps([len(p) for p in parts]))\n"
            "print(''.join(parts) == context, all(len(p) <= 100 for p in parts))\n"
            "print(sum(not p.endswith('\\n') for p in parts))\n"
            "print(len(chunks()[0]), len(chunks('')))",
        ],
        subcall_chars=2_000,
    )
    summary, sizes, whole, cut_mid_line, default = ok(result).splitlines()
    assert summary == "<5 chunks of 55 to 100 characters (size=100)>"
    assert json.loads(sizes) == [96, 84, 100, 100, 55]  # the long line's end packs with 'end'
    assert whole == "True True"
    assert cut_mid_line == "2"  # only the 250-character line was cut inside
    # The default size is the worker's capacity less room for an instruction.
    assert default == f"{min(len(text), 2_000 - instruction_room(2_000))} 0"


def test_chunks_of_a_dict_pack_files_under_headers_and_split_big_ones() -> None:
    files = {
        "small.txt": "one\ntwo\n",
        "tiny.txt": "x",
        "big.log": "".join(f"{n}\n" for n in range(1, 41)),
    }
    (result,) = cells(
        files,
        ["import json\nprint(json.dumps(chunks(size=60)))"],
    )
    pieces = json.loads(ok(result))
    assert pieces[0] == "==> small.txt <==\none\ntwo\n==> tiny.txt <==\nx\n"
    parts = pieces[1:]
    assert all(len(piece) <= 60 for piece in pieces)
    headers = [part.split("\n", 1)[0] for part in parts]
    assert headers[0] == "==> big.log (lines 1-13) <=="
    assert all(re.fullmatch(r"==> big\.log \(lines \d+-\d+\) <==", h) for h in headers)
    body = "".join(part.split("\n", 1)[1] for part in parts)
    assert body == files["big.log"]  # the parts hold the file whole, in order
    last = re.fullmatch(r"==> big\.log \(lines (\d+)-(\d+)\) <==", headers[-1])
    assert last is not None and last.group(2) == "40"


# ----- llm_map -----


class Worker:
    """A sub-call handler playing the worker model for llm_map: it reads each prompt's numbered
    items and answers through `answer(round, numbers, items)`, recording every prompt."""

    ITEM = re.compile(r"^(\d+): ([^\n]*)$|^<item (\d+)>\n(.*?)\n</item \3>$", re.M | re.S)

    def __init__(self, answer: Callable[[int, list[int], list[str]], str]) -> None:
        self.answer = answer
        self.prompts: list[str] = []
        self.calls = 0

    async def __call__(self, request: QueryRequest) -> list[str]:
        self.calls += 1
        self.prompts += request.prompts
        replies = []
        for prompt in request.prompts:
            body = prompt.split("\n\n", 2)[2].rsplit("\n\n", 1)[0]
            found = [
                (int(m.group(1) or m.group(3)), m.group(2) or m.group(4))
                for m in self.ITEM.finditer(body)
            ]
            replies.append(self.answer(self.calls, [n for n, _ in found], [t for _, t in found]))
        return replies


def run_map(code: str, worker: Worker, subcall_chars: int = 100_000) -> list[Any]:
    (result,) = cells(
        "ctx",
        [code + "\nimport json\nprint(json.dumps(result))"],
        on_query=worker,
        subcall_chars=subcall_chars,
    )
    lines = ok(result).splitlines()
    return [lines[:-1], json.loads(lines[-1])]


def test_llm_map_aligns_replies_given_out_of_order_with_chatter() -> None:
    def answer(call: int, numbers: list[int], items: list[str]) -> str:
        pairs = list(zip(numbers, items, strict=True))[::-1]
        return (
            "Sure, here are the labels:\n\n"
            + "\n".join(
                f"- **{n}.** {text.upper()}" if n % 2 else f"{n}: {text.upper()}"
                for n, text in pairs
            )
            + "\nLet me know if you need more."
        )

    worker = Worker(answer)
    said, result = run_map(
        "result = llm_map(['apple', 'banana', 'cherry', 'date', 'elder'], 'Shout it.')", worker
    )
    assert result == ["APPLE", "BANANA", "CHERRY", "DATE", "ELDER"]
    assert said == []  # nothing to report when every item was answered
    (prompt,) = worker.prompts
    assert prompt.startswith("Shout it.\n\n")
    assert "1: apple\n2: banana\n3: cherry\n4: date\n5: elder\n" in prompt


def test_llm_map_asks_once_more_for_dropped_numbers_then_gives_error_strings() -> None:
    def answer(call: int, numbers: list[int], items: list[str]) -> str:
        if call == 1:  # drops 2 and 4
            return "\n".join(f"{n}: {t}!" for n, t in zip(numbers, items, strict=True) if n % 2)
        return "\n".join(f"{n}: {t}?" for n, t in zip(numbers, items, strict=True) if n != 4)

    worker = Worker(answer)
    said, result = run_map("result = llm_map(['a', 'b', 'c', 'd', 'e'], 'Echo.')", worker)
    assert result[:3] == ["a!", "b?", "c!"] and result[4] == "e!"
    assert result[3] == (
        "Error: llm_query failed: the worker's reply had no `4: ...` line for item 4 (asked twice)"
    )
    assert worker.calls == 2  # one re-ask, never more
    again = worker.prompts[-1]
    assert "Asked again" in again and "2: b\n4: d\n" in again and "1: a" not in again
    assert said == [
        "(llm_map: 5 items; 2 had no answer line and were asked again; 1 failed, holding an "
        '"Error: llm_query failed: ..." string)'
    ]


def test_llm_map_batches_fit_a_small_capacity_and_batch_size() -> None:
    def answer(call: int, numbers: list[int], items: list[str]) -> str:
        return "\n".join(f"{n}: {len(t)}" for n, t in zip(numbers, items, strict=True))

    worker = Worker(answer)
    items = [f"item number {n} " + "x" * (n % 7) * 10 for n in range(60)]
    _, result = run_map(f"result = llm_map({items!r}, 'Count the characters.')", worker, 700)
    assert result == [str(len(item)) for item in items]
    assert worker.calls == 1  # the batches went as one concurrent fan-out
    assert len(worker.prompts) > 5
    assert all(len(prompt) <= 700 for prompt in worker.prompts)
    assert max(len(Worker.ITEM.findall(prompt)) for prompt in worker.prompts) > 1

    capped = Worker(answer)
    _, result = run_map(f"result = llm_map({items[:10]!r}, 'Count.', batch_size=3)", capped)
    assert result == [str(len(item)) for item in items[:10]]
    held = [len(Worker.ITEM.findall(prompt)) for prompt in capped.prompts]
    assert held == [3, 3, 3, 1]


def test_llm_map_items_with_newlines_are_tagged_and_one_too_big_fails_alone() -> None:
    def answer(call: int, numbers: list[int], items: list[str]) -> str:
        return "\n".join(
            f"{n}: {t.count(chr(10)) + 1} lines" for n, t in zip(numbers, items, strict=True)
        )

    worker = Worker(answer)
    code = "result = llm_map(['one\\ntwo', 'three', 'a\\nb\\nc', 'z' * 900], 'Count lines.')"
    said, result = run_map(code, worker, 800)
    assert result[:3] == ["2 lines", "1 lines", "3 lines"]
    assert result[3].startswith("Error: llm_query failed: not sent: item 4 has 900 characters")
    assert "<item 1>\none\ntwo\n</item 1>\n" in worker.prompts[0]
    assert "(each between <item N> and </item N>)" in worker.prompts[0]
    assert all("zzz" not in prompt for prompt in worker.prompts)
    assert worker.calls == 1  # the oversized item is not asked again either
    assert said[0].startswith("(llm_map: 4 items; 0 had no answer line")


def test_llm_map_re_asks_a_failed_prompt_but_not_a_refused_one() -> None:
    calls: list[int] = []

    async def flaky(request: QueryRequest) -> list[str]:
        calls.append(len(request.prompts))
        failed = "Error: llm_query failed: provider unavailable (503)"
        refused = "Error: llm_query failed: not sent: the sub-call budget is used up"
        return [
            (failed if len(calls) == 1 else "1: P") if "1: p" in prompt else refused
            for prompt in request.prompts
        ]

    (result,) = cells(
        "ctx",
        ["import json\nprint(json.dumps(llm_map(['p', 'q'], 'Up.', batch_size=1)))"],
        on_query=flaky,
    )
    last = ok(result).splitlines()[-1]
    assert json.loads(last) == [
        "P",
        "Error: llm_query failed: not sent: the sub-call budget is used up",
    ]
    assert calls == [2, 1]  # the refused prompt was not sent again


def test_helpers_survive_rebinding_and_refuse_a_str_of_items() -> None:
    rebound, restored, wrong = cells(
        "a\nb\n",
        [
            "grep = lines = chunks = llm_map = None",
            "grep('b')",
            "llm_map(context, 'label')",
        ],
    )
    ok(rebound)
    assert ok(restored).startswith("2: b\n")
    assert wrong.error
    assert "TypeError: llm_map takes a list of items, got str; to cut a text into items" in (
        wrong.output
    )


# ----- errors -----


def test_a_syntax_error_names_the_cell_line_and_shows_no_frames() -> None:
    bad, late, after = cells(
        "ctx",
        ["x = 1\nprint('not run')\ny = (2,\n", "print('not run')\nreturn 3", "print(x)"],
    )
    assert bad.error
    assert bad.output.splitlines() == [
        '  File "<cell 1>", line 3',
        "    y = (2,",
        "        ^",
        "SyntaxError: '(' was never closed",
        "Nothing in the cell ran: line 3 of the cell is not valid Python. Fix it and send the "
        "whole cell again.",
    ]
    # Caught when compiling, not parsing: the same message.
    assert late.error and "line 2 of the cell is not valid Python" in late.output
    assert "Traceback" not in late.output and "not run" not in late.output
    assert after.error and "NameError: name 'x' is not defined" in after.output


# ----- through the CLI -----


def test_llm_map_end_to_end_with_the_scripted_provider(
    write_script: Callable[..., str],
) -> None:
    code = (
        "labels = llm_map(context.splitlines(), 'Label each fruit by colour.')\n"
        "FINAL(' | '.join(labels))"
    )
    sub = [
        {
            # One prompt holds the three items; the reply is out of order and chatty.
            "match": r"1: (\w+)\n2: (\w+)\n3: (\w+)",
            "reply": "Here you go.\n3: \\3 is red\n1: \\1 is red\n2: \\2 is yellow\nDone.",
        },
        {"reply": "no idea"},
    ]
    script = write_script([repl(code)], sub)
    proc = invoke_scripted(script, "q?", stdin=b"apple\nbanana\ncherry\n")
    assert proc.exit_code == 0, proc.stderr
    assert proc.stdout == "apple is red | banana is yellow | cherry is red\n"

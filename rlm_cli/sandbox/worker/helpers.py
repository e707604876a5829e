"""The REPL's helpers for the common moves: `grep`, `lines`, `chunks` and `llm_map`.

They run inside the cell, as code the model could have written itself (the host trusts nothing a
cell sends, these included); they exist because every task wrote them again. Their frames live in
this package, so tracebacks shown to the model leave them out (`repl._cell_traceback`): errors
read as raised at the cell's line.

Lines are numbered from 1 and counted at "\\n" (as `grep -n` and editors count; a "\\r" before it
is dropped from the text shown): for ordinary text this is `str.splitlines()`'s numbering.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

GREP_LINE_CHARS = 300  # grep prints at most this much of a line (the returned Hit holds it whole)
WINDOW_LINE_CHARS = 2_000  # lines() prints at most this much of a line
WINDOW_LINES = 50  # lines() shows this many when `end` is left out
MAP_BATCH = 50  # llm_map puts at most this many items in one prompt unless batch_size says
FAILED = "Error: llm_query failed: "  # the host's failed-sub-call form (sandbox/notes.call_failed)


def instruction_room(capacity: int) -> int:
    """Characters chunks() leaves free in a prompt for the instruction around a chunk."""
    return min(4_000, capacity // 4)


class Hit(NamedTuple):
    """One line grep matched: the file's name (None when searching a str), its number, its text."""

    name: str | None
    line: int
    text: str


class Hits(list[Hit]):
    """grep's result: a list of Hit, whose repr is a summary (grep has printed the hits already,
    and a cell ending in `grep(...)` would otherwise print them all again)."""

    def __repr__(self) -> str:
        files = len({hit.name for hit in self})
        where = f" in {files:,} files" if files > 1 else ""
        return f"<{_count(len(self), 'hit')}{where}: a list of Hit(name, line, text)>"


class Chunks(list[str]):
    """chunks()'s result: a list of str whose repr is a summary, not the whole text again."""

    def __init__(self, pieces: list[str], size: int) -> None:
        super().__init__(pieces)
        self.size = size

    def __repr__(self) -> str:
        if not self:
            return "<0 chunks>"
        sizes = sorted(len(piece) for piece in self)
        spread = f"{sizes[0]:,}" if sizes[0] == sizes[-1] else f"{sizes[0]:,} to {sizes[-1]:,}"
        return f"<{_count(len(self), 'chunk')} of {spread} characters (size={self.size:,})>"


def text_lines(text: str) -> list[str]:
    """`text` as lines, counted at "\\n", without their line endings."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()
    return [part[:-1] if part.endswith("\r") else part for part in parts]


def _count(number: int, thing: str) -> str:
    return f"{number:,} {thing}" + ("" if number == 1 else "s")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else f"{text[:width]}… [+{len(text) - width:,} chars]"


def _files(where: Any, context: Any, helper: str) -> list[tuple[str | None, str]]:
    """The texts `where` names: a str (or, when `context` is a dict, one of its file names), or a
    dict of name -> text; None means `context`."""
    if where is None:
        where = context
    if isinstance(where, str):
        if isinstance(context, dict) and where in context:
            return [(where, _as_text(context[where]))]
        if isinstance(context, dict) and "\n" not in where and len(where) < 300:
            print(f"({helper}: no file named {where!r} in context, so the string itself is used)")
        return [(None, where)]
    if isinstance(where, dict):
        return [(str(name), _as_text(text)) for name, text in where.items()]
    hint = " (for a list, pass dict(enumerate(items)))" if isinstance(where, list | tuple) else ""
    raise TypeError(
        f"{helper}: takes a str, a dict of name -> text, or a file name of context; "
        f"got {type(where).__name__}{hint}"
    )


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


# ----- grep -----


def search_lines(pattern: Any, where: Any, around: int, max_hits: int | None, context: Any) -> Hits:
    """See `make_helpers`: the lines matching `pattern`, printed and returned."""
    regex = _regex(pattern)
    around = max(int(around), 0)
    limit = None if max_hits is None else max(int(max_hits), 0)
    files = _files(where, context, "grep")
    # A literal is looked for in the whole text first: most files of a directory lack it.
    literal = not regex.flags & re.IGNORECASE and re.escape(regex.pattern) == regex.pattern
    hits = Hits()
    shown: list[str] = []
    for name, text in files:
        if literal and regex.pattern not in text:
            continue
        numbered = text_lines(text)
        found = [index for index, line in enumerate(numbered) if regex.search(line)]
        hits.extend(Hit(name, index + 1, numbered[index]) for index in found)
        room = len(found) if limit is None else max(limit - (len(hits) - len(found)), 0)
        shown += _grep_lines(name, numbered, found[:room], around, bool(shown))
    for line in shown:
        print(line)
    if not hits:
        searched = f" in {len(files):,} files" if len(files) > 1 else ""
        print(f"(grep: no line matches {regex.pattern!r}{searched})")
    elif limit is not None and len(hits) > limit:
        print(
            f"... {_count(len(hits) - limit, 'more hit')} not shown (max_hits={limit}); the list "
            f"grep returned holds all {len(hits):,}"
        )
    return hits


def _regex(pattern: Any) -> re.Pattern[str]:
    if isinstance(pattern, re.Pattern):
        return pattern
    try:
        return re.compile(_as_text(pattern))
    except re.error as exc:
        raise ValueError(
            f"grep: {pattern!r} is not a valid regular expression ({exc}); for a literal string, "
            "pass re.escape(text)"
        ) from None


def _grep_lines(
    name: str | None, numbered: list[str], found: list[int], around: int, after_others: bool
) -> Iterator[str]:
    """grep -n's layout: `name:line: text` for a hit, `name-line- text` for a line around one,
    `--` between groups that do not touch."""
    prefix = "" if name is None else name
    hit_set = set(found)
    last = -2
    for index in found:
        begin, end = max(index - around, last + 1, 0), min(index + around, len(numbered) - 1)
        if begin > last + 1 and (last >= 0 or after_others) and around:
            yield "--"
        for at in range(begin, end + 1):
            mark = ":" if at in hit_set else "-"
            head = f"{prefix}{mark}{at + 1}" if name is not None else f"{at + 1}"
            yield f"{head}{mark} {_cut(numbered[at], GREP_LINE_CHARS)}"
        last = max(last, end)


# ----- lines -----


def print_window(where: Any, start: Any, end: Any, context: Any) -> None:
    """See `make_helpers`: print a numbered window of one text."""
    if isinstance(where, int) and not isinstance(where, bool):  # lines(10, 20): of `context`
        where, start, end = None, where, start
    name, text = _one_file(where, context)
    numbered = text_lines(text)
    total = len(numbered)
    first = _position(1 if start is None else start, total)
    last = min(first + WINDOW_LINES - 1, total) if end is None else _position(end, total)
    first, last = max(first, 1), min(last, total)
    label = "" if name is None else f"{name}: "
    if first > last:
        print(f"[{label}no lines in {start}..{end}: the text has {total:,} lines]")
        return
    print(f"[{label}lines {first:,}-{last:,} of {total:,}]")
    for number in range(first, last + 1):
        print(f"{number}: {_cut(numbered[number - 1], WINDOW_LINE_CHARS)}")


def _one_file(where: Any, context: Any) -> tuple[str | None, str]:
    if where is None and isinstance(context, dict):
        example = next(iter(context), "name")
        raise ValueError(
            f"lines: context is a dict of {len(context):,} files; name one, e.g. "
            f"lines({example!r}, 1, 20)"
        )
    files = _files(where, context, "lines")
    if len(files) != 1:
        raise ValueError(f"lines: shows one text at a time, got a dict of {len(files):,}")
    return files[0]


def _position(value: Any, total: int) -> int:
    """A 1-based line number; negative ones count from the end (-1 is the last line)."""
    number = int(value)
    return total + 1 + number if number < 0 else number


# ----- chunks -----


def cut_into_chunks(text: Any, size: Any, capacity: int) -> Chunks:
    """See `make_helpers`: `text` cut at line ends into pieces of at most `size` characters."""
    limit = capacity - instruction_room(capacity) if size is None else int(size)
    if limit < 1:
        raise ValueError(f"chunks: size must be at least 1, got {size!r}")
    if isinstance(text, str):
        return Chunks(list(_pieces(text, limit)), limit)
    if isinstance(text, dict):
        return Chunks(_pack(_file_blocks(text, limit), limit), limit)
    raise TypeError(f"chunks: takes a str or a dict of name -> text, got {type(text).__name__}")


def _pieces(text: str, limit: int) -> Iterator[str]:
    """Pieces of at most `limit` characters, each ending at a line end where one is in reach; a
    longer line is cut at `limit`."""
    begin = 0
    while len(text) - begin > limit:
        cut = text.rfind("\n", begin, begin + limit) + 1
        end = cut if cut > begin else begin + limit
        yield text[begin:end]
        begin = end
    if begin < len(text):
        yield text[begin:]


def _file_blocks(files: dict[Any, Any], limit: int) -> Iterator[str]:
    """Each file under a `==> name <==` header; a file too big for one piece in parts whose
    headers give their line numbers."""
    for key, value in files.items():
        name, text = str(key), _as_text(value)
        if text and not text.endswith("\n"):
            text += "\n"
        whole = f"==> {name} <==\n{text}"
        if len(whole) <= limit:
            yield whole
            continue
        widest = f"==> {name} (lines {text.count(chr(10))}-{text.count(chr(10))}) <==\n"
        if len(widest) >= limit:
            raise ValueError(
                f"chunks: size={limit:,} leaves no room after the header of file {name!r}; "
                "use a larger size"
            )
        line = 1
        for piece in _pieces(text, limit - len(widest)):
            newlines = piece.count("\n")
            last = line + newlines - (1 if piece.endswith("\n") else 0)
            yield f"==> {name} (lines {line}-{last}) <==\n{piece}"
            line += newlines


def _pack(blocks: Iterator[str], limit: int) -> list[str]:
    """Blocks joined into as few pieces of at most `limit` characters as their order allows."""
    pieces: list[str] = []
    current: list[str] = []
    used = 0
    for block in blocks:
        if current and used + len(block) > limit:
            pieces.append("".join(current))
            current, used = [], 0
        current.append(block)
        used += len(block)
    if current:
        pieces.append("".join(current))
    return pieces


# ----- llm_map -----

_MAP_RULE = (
    "Answer every numbered item below{tagged}, each on one line written `N: answer`, where N is "
    "the item's number. Write nothing else, and keep each answer on a single line."
)
_MAP_AGAIN = "(Asked again: an earlier reply had no `N: answer` line for these items.)"
_MAP_END = "Now answer each item as one `N: answer` line."
# `N: answer`, and the forms models drift into: `- N. answer`, `[N] answer`, `<item N>: answer`,
# `**N:** answer`.
_ANSWER_LINE = re.compile(
    r"\s*(?:[-*•]\s*)?(?:\*\*)?[\[(<#]?\s*(?:item\s*)?(\d+)(?:\*\*)?"
    r"(?:\s*[\])>]\s*(?:\*\*)?[:.=\-–—]?|\s*[:.)=\-–—])(?:\*\*)?\s*(.*)",
    re.IGNORECASE,
)


def map_with_worker(
    items: Any,
    instruction: Any,
    batch_size: Any,
    capacity: int,
    query: Callable[[list[str]], list[str]],
) -> list[str]:
    """See `make_helpers`: one answer per item, from numbered batches, aligned with `items`."""
    if isinstance(items, str | bytes | dict):
        raise TypeError(
            f"llm_map takes a list of items, got {type(items).__name__}; to cut a text into "
            "items, use chunks(text)"
        )
    texts = [_as_text(item) for item in items]
    most = MAP_BATCH if batch_size is None else int(batch_size)
    if most < 1:
        raise ValueError(f"llm_map: batch_size must be at least 1, got {batch_size!r}")
    blocks = any("\n" in text or "\r" in text for text in texts)
    answers: dict[int, str] = {}
    failures: dict[int, str] = {}  # index -> the error string its slot holds if never answered
    wanted = list(range(len(texts)))
    asked_again = 0
    for again in (False, True):
        batches = _batches(wanted, texts, _as_text(instruction), capacity, most, blocks, again)
        failures.update(batches.refused)
        replies = _ask(query, [prompt for prompt, _ in batches.prompts], tolerate=again)
        wanted = []
        for (_, members), reply in zip(batches.prompts, replies, strict=True):
            if reply.startswith(FAILED):
                failures.update((index, reply) for index in members)
                # A refusal (a budget) or a stop would only be refused or stopped again.
                if not reply[len(FAILED) :].startswith(("not sent", "stopped")):
                    wanted += members
                continue
            found = _parse(reply, members)
            answers.update(found)
            for index in members:
                if index not in found:
                    twice = " (asked twice)" if again else ""
                    failures[index] = (
                        f"{FAILED}the worker's reply had no `{index + 1}: ...` line for item "
                        f"{index + 1}{twice}"
                    )
                    wanted.append(index)
        if not wanted:
            break
        asked_again = asked_again or len(wanted)
    failed = len(texts) - len(answers)
    if asked_again or failed:
        print(
            f"(llm_map: {_count(len(texts), 'item')}; {asked_again:,} had no answer line and "
            f"{'was' if asked_again == 1 else 'were'} asked again; {failed:,} failed, holding an "
            f'"{FAILED}..." string)'
        )
    return [answers.get(index, failures.get(index, "")) for index in range(len(texts))]


class _Batches(NamedTuple):
    prompts: list[tuple[str, list[int]]]  # each prompt and the item indices it holds
    refused: dict[int, str]  # items too big for any prompt, with the error their slot holds


def _batches(
    indices: list[int],
    texts: list[str],
    instruction: str,
    capacity: int,
    most: int,
    blocks: bool,
    again: bool,
) -> _Batches:
    """The items at `indices` in prompts of at most `capacity` characters and `most` items."""
    rule = _MAP_RULE.format(tagged=" (each between <item N> and </item N>)" if blocks else "")
    head = f"{instruction}\n\n{rule}\n" + (f"{_MAP_AGAIN}\n" if again else "") + "\n"
    tail = f"\n{_MAP_END}"
    frame = len(head) + len(tail)
    if frame >= capacity:
        raise ValueError(
            f"llm_map: the instruction has {len(instruction):,} characters, which with the "
            f"answer format leaves no room for items in a prompt of {capacity:,}; shorten it"
        )
    prompts: list[tuple[str, list[int]]] = []
    refused: dict[int, str] = {}
    parts: list[str] = []
    members: list[int] = []
    used = frame
    for index in indices:
        part = _render(index + 1, texts[index], blocks)
        if frame + len(part) > capacity:
            refused[index] = (
                f"{FAILED}not sent: item {index + 1} has {len(texts[index]):,} characters; with "
                f"the instruction its prompt would have {frame + len(part):,}, over the "
                f"{capacity:,} one prompt may hold. Cut it smaller (chunks() does)"
            )
            continue
        if members and (used + len(part) > capacity or len(members) >= most):
            prompts.append((head + "".join(parts) + tail, members))
            parts, members, used = [], [], frame
        parts.append(part)
        members.append(index)
        used += len(part)
    if members:
        prompts.append((head + "".join(parts) + tail, members))
    return _Batches(prompts, refused)


def _render(number: int, text: str, blocks: bool) -> str:
    """One item as the prompt shows it: `N: text` when every item is one line, else tagged."""
    return f"<item {number}>\n{text}\n</item {number}>\n" if blocks else f"{number}: {text}\n"


def _ask(query: Callable[[list[str]], list[str]], prompts: list[str], tolerate: bool) -> list[str]:
    """The replies to `prompts`; a re-ask that cannot be sent (a budget) fails its slots rather
    than losing the answers already in hand."""
    if not prompts:
        return []
    try:
        return query(prompts)
    except RuntimeError as exc:
        if not tolerate:
            raise
        return [f"{FAILED}not sent: {exc}"] * len(prompts)


def _parse(reply: str, members: list[int]) -> dict[int, str]:
    """The answers in `reply` for the items in `members`, found by number in any order; other
    lines (chatter, numbers not asked) are ignored, and the first answer for a number wins."""
    asked = {index + 1 for index in members}
    found: dict[int, str] = {}
    for line in reply.splitlines():
        match = _ANSWER_LINE.fullmatch(line)
        if match is None:
            continue
        number = int(match.group(1))
        if number in asked and number - 1 not in found:
            found[number - 1] = match.group(2).strip()
    return found


# ----- bound in the namespace -----


def make_helpers(
    context_of: Callable[[], Any],
    capacity_of: Callable[[], int],
    query: Callable[[list[str], str | None, bool], list[str]],
) -> dict[str, Callable[..., Any]]:
    """The four helpers as the cell sees them: `context_of()` is the input (`context`),
    `capacity_of()` the characters one sub-call prompt may hold, `query(prompts, model,
    batched)` the worker's sub-call path (`Worker._query`)."""

    def ask(prompts: list[str]) -> list[str]:
        return query(prompts, None, True)  # concurrently, as llm_query_batched

    def grep(pattern: Any, where: Any = None, context: int = 0, max_hits: int | None = 50) -> Hits:
        """Print the lines of `where` (default: `context`; a str, a dict of name -> text, or a
        file name of context) matching the regular expression `pattern`: `line: text` for a str,
        `name:line: text` for a dict, with `context` lines around each hit (`name-line- text`),
        at most `max_hits` (None: all) then a line saying how many more. Returns every hit, as
        a list of Hit(name, line, text) (name None for a str)."""
        return search_lines(pattern, where, context, max_hits, context_of())

    def lines(where: Any = None, start: int | None = None, end: int | None = None) -> None:
        """Print lines `start` (default 1) to `end` (1-based, both included; negative counts
        from the end) of `where` (a str, or a file name of context), each as `line: text`.
        `end` left out: 50 lines. lines(10, 20) shows those of `context`."""
        print_window(where, start, end, context_of())

    def chunks(text: Any = None, size: int | None = None) -> Chunks:
        """Cut `text` (default: `context`) into pieces of at most `size` characters (default:
        what one sub-call prompt holds, less room for an instruction), at line ends; a longer
        line is cut. A dict's files go under `==> name <==` headers, several to a piece when
        they fit, a big one in parts headed `==> name (lines a-b) <==`. Returns a list of str."""
        return cut_into_chunks(context_of() if text is None else text, size, capacity_of())

    def llm_map(items: Any, instruction: str, batch_size: int | None = None) -> list[str]:
        """Ask the worker model `instruction` about each item: the items go numbered, as many
        to a prompt as fit (at most `batch_size`, default 50), the prompts concurrently; the
        replies' `N: answer` lines are matched back by number, and numbers missing are asked
        once more. Returns one str per item, in order; an item never answered holds an
        "Error: llm_query failed: ..." string."""
        return map_with_worker(items, instruction, batch_size, capacity_of(), ask)

    return {"grep": grep, "lines": lines, "chunks": chunks, "llm_map": llm_map}

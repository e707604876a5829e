"""The first message: what `context` is (never its content, beyond a few cut lines), the limits in
force, the Python the cells run on, and the question.

The metadata comes from the worker (`sandbox/worker/load.describe`). Everything in it that came
from the input (names, sample lines, headers) is untrusted text: it is shown only through
`safe`, which escapes control and invisible characters and cuts it short.
"""

from __future__ import annotations

from typing import Any

from rlm_cli.engine.prompts.facts import RunFacts, limits
from rlm_cli.inputs import estimate_tokens

FILES_SHOWN = 100
LINE_CHARS = 200  # of each sample line shown
NAME_CHARS = 200  # of a file name
FORMAT_NAMES = {
    "csv": "CSV (comma-separated)",
    "tsv": "TSV (tab-separated)",
    "json": "JSON",
    "jsonl": "JSON Lines (one JSON value per line)",
}


def safe(text: Any, width: int = LINE_CHARS, length: int | None = None) -> str:
    """`text` fit to show the root model: control and invisible characters (escape sequences,
    bidi overrides, zero-width marks, line ends) written as Python escapes, tabs kept, cut to
    `width` characters with a note of how many more there were (`length`: the whole line's)."""
    text = str(text)
    length = max(len(text), length or 0)
    shown = text[:width]
    cleaned = "".join(
        char if char.isprintable() or char == "\t" else char.encode("unicode_escape").decode()
        for char in shown
    )
    return cleaned if length <= width else f"{cleaned}… [+{length - width:,} chars]"


def first_message(question: str, meta: dict[str, Any], facts: RunFacts) -> str:
    """Metadata about `context`, the limits, the Python, and the question.

    Structured files are named with their format and header or first record, so that the first
    code can parse them; the text itself stays a str in `context`.
    """
    parts = [
        "\n".join(_context_lines(meta)),
        "Limits:\n" + "\n".join(limits(facts)),
        _python_line(meta),
        f"Question: {question}",
        "Start by looking at `context` in a ```repl block.",
    ]
    return "\n\n".join(part for part in parts if part)


def _context_lines(meta: dict[str, Any]) -> list[str]:
    chars = _int(meta.get("chars"))
    tokens = _int(meta.get("estimated_tokens")) or estimate_tokens(chars)
    kind = safe(meta.get("type", "str"), 40)
    size = f"{chars:,} characters (about {tokens:,} tokens)"
    formats = _dict(meta, "formats")
    files = _list(meta, "files") if "files" in meta else None
    if files is not None:
        lines = _file_list(meta, files, formats, size)
    elif kind == "str" and "lines" in meta:
        lines = _text_lines(meta, size)
        if len(formats) == 1:
            (form,) = formats.values()
            lines.insert(1, f"The text is {_format_note(form)}.")
    else:
        entries = f", {_int(meta.get('entries')):,} entries" if "entries" in meta else ""
        lines = [f"`context` is a {kind} of {size}{entries}."]
    invalid = _int(meta.get("invalid_bytes_total"))
    if invalid:
        counts = _dict(meta, "invalid_bytes")
        where = ", ".join(f"{safe(name, NAME_CHARS)} ({_int(n):,})" for name, n in counts.items())
        lines.append(
            f"{invalid:,} invalid byte(s) were replaced with U+FFFD while decoding"
            + (f": {where}." if where and files is not None else ".")
        )
    return lines


def _text_lines(meta: dict[str, Any], size: str) -> list[str]:
    """A str: its name, size and line count, then its first and last lines, numbered."""
    total = _int(meta.get("lines"))
    name = f"the file `{safe(meta['name'], NAME_CHARS)}`, " if meta.get("name") else ""
    ending = "ends" if meta.get("ends_with_newline") else "does not end"
    counted = f"{total:,} line{'' if total == 1 else 's'}"
    if "lines_at_newline" in meta:
        counted += f" ({_int(meta['lines_at_newline']):,} counting only \\n, as grep and lines do)"
    lines = [f"`context` is a str: {name}{size}, {counted}; it {ending} with a newline."]
    head, tail = _samples(_list(meta, "head")), _samples(_list(meta, "tail"))
    if not head:
        return lines
    width = len(str(total))
    if tail:
        lines.append(
            f"Its first {len(head)} and last {len(tail)} lines (cut to {LINE_CHARS} characters):"
        )
    else:
        lines.append(
            f"Its {'line' if len(head) == 1 else 'lines'} (cut to {LINE_CHARS} characters):"
        )
    lines += [f"  {n:>{width}}: {text}" for n, text in enumerate(head, start=1)]
    if tail:
        lines.append(f"  {'.' * width}")
        start = total - len(tail) + 1
        lines += [f"  {n:>{width}}: {text}" for n, text in enumerate(tail, start=start)]
    return lines


def _samples(value: list[Any]) -> list[str]:
    """Sample lines from the worker ([text, whole length] pairs), made safe."""
    shown = []
    for item in value[:10]:
        if isinstance(item, list) and len(item) == 2:
            shown.append(safe(item[0], LINE_CHARS, _int(item[1])))
    return shown


def _file_list(
    meta: dict[str, Any], files: list[Any], formats: dict[str, Any], size: str
) -> list[str]:
    total = _int(meta.get("entries")) or len(files)
    root = meta.get("root")
    if root:
        lines = [
            f"`context` is a dict of the {total:,} files of the directory "
            f"`{safe(root, NAME_CHARS)}`, {size} in all. Keys are paths relative to it; "
            "values are the files' text:"
        ]
    else:
        lines = [f"`context` is a dict of {total:,} files, {size} in all, name -> text:"]
    counts = _list(meta, "file_lines")
    for index, entry in enumerate(files[:FILES_SHOWN]):
        if not (isinstance(entry, list | tuple) and len(entry) == 2):
            continue
        name, chars = entry
        about = [f"{_int(chars):,} chars"]
        count = counts[index] if index < len(counts) else None
        if isinstance(count, int):
            about.append(f"{count:,} line{'' if count == 1 else 's'}")
        form = formats.get(name)
        if isinstance(form, dict):
            about.append(_format_note(form))
        lines.append(f"- {safe(name, NAME_CHARS)} ({'; '.join(about)})")
    if total > FILES_SHOWN:
        lines.append(f"- ... and {total - FILES_SHOWN:,} more (list them with `list(context)`)")
    return lines


def _format_note(form: dict[str, Any]) -> str:
    kind = str(form.get("kind", ""))
    preview = form.get("preview")
    name = FORMAT_NAMES.get(kind, safe(kind, 40))
    return f"{name}; {safe(preview, 300)}" if preview else name


def _python_line(meta: dict[str, Any]) -> str:
    version = safe(meta.get("python") or "3", 20)
    modules = _list(meta, "modules")
    if not modules:
        return f"Python {version}, with the standard library only (no numpy, pandas or others)."
    names = ", ".join(safe(name, 40) for name in modules[:20])
    return f"Python {version}, with the standard library and {names}."


def _dict(meta: dict[str, Any], key: str) -> dict[str, Any]:
    value = meta.get(key)
    return value if isinstance(value, dict) else {}


def _list(meta: dict[str, Any], key: str) -> list[Any]:
    value = meta.get(key)
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0

"""Inputs: turn paths, directories, archives and stdin into Sources the worker loads by itself.

The host only stats, sniffs and streams files here (in fixed-size chunks); it never holds an input
whole. The worker reads each Source itself, once.

Modules: `model` (Source, Skip, Inputs, InputOptions), `resolve` (arguments -> Inputs: files,
compressed files, the memory budget), `walk` (directories), `members` (archive members), `ignore`
(the one filter chain: VCS folders, .gitignore/.rlmignore, --include/--exclude, secrets),
`rejections` (why a file cannot load, in users' words), `sniff` (encodings, binaries, formats),
`scan` (streaming passes), `archives` (compressed streams, archive listings), `memory` (the
machine's memory), `tokens` (estimates), `report` (summaries for people).

The package itself stays light, since the command line's flags read its model: take `resolve`
from `rlm_cli.inputs.resolve`, which brings the filters (pathspec) with it.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from rlm_cli.errors import UsageError
from rlm_cli.format import format_bytes  # re-exported until cli/inspect.py takes it from there
from rlm_cli.inputs.memory import memory_bytes
from rlm_cli.inputs.model import (
    CHARS_PER_TOKEN,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_MEMORY_SHARE,
    STDIN_NAME,
    InputOptions,
    Inputs,
    Shape,
    Skip,
    Source,
    estimate_tokens,
)

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_MEMORY_SHARE",
    "STDIN_NAME",
    "InputOptions",
    "Inputs",
    "Shape",
    "Skip",
    "Source",
    "estimate_tokens",
    "format_bytes",
    "from_value",
    "memory_bytes",
]


def from_value(value: Any) -> Inputs:
    """Inputs for a Python value (the library API, child runs): written to a private temp file."""
    fd, path = tempfile.mkstemp(
        prefix="rlm-context-", suffix=".txt" if isinstance(value, str) else ".json"
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            if isinstance(value, str):
                handle.write(value)
            else:
                json.dump(value, handle, ensure_ascii=False)
    except (UnicodeError, ValueError, TypeError) as exc:
        # A lone surrogate, say (a forged rlm_query context): no half-written file may stay.
        os.unlink(path)
        raise UsageError(f"the context cannot be written as text: {exc}") from None
    except BaseException:
        os.unlink(path)
        raise
    source = Source(
        name="context",
        path=path,
        size=os.path.getsize(path),
        format="text" if isinstance(value, str) else "json",
    )
    return Inputs(sources=[source], shape="single", temp_paths=[path])

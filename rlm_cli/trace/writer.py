"""The trace writer: an event subscriber that appends one JSON line per event, as it happens.

Each line is flushed when written, so a run killed with SIGKILL keeps every step completed so far.
The first line is a header; the last line of a finished run is its `run_finished` summary.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import IO, Any

from rlm_cli import __version__
from rlm_cli.errors import UsageError
from rlm_cli.events import Event, RootTextDelta, SubcallStarted

FORMAT_VERSION = 1
# Sub-call prompts longer than this are stored as head, tail, length and sha256 (unless full).
PROMPT_KEEP = 2_000


class TraceWriter:
    def __init__(self, path: str, *, full: bool = False) -> None:
        self.path = path
        self.full = full
        try:
            # backslashreplace: a question or file name that is not valid UTF-8 (a lone
            # surrogate) is written as a \\udcXX JSON escape instead of failing the run.
            self._file: IO[str] = open(  # noqa: SIM115 - closed by close()
                path, "w", encoding="utf-8", errors="backslashreplace", buffering=1
            )
        except OSError as exc:
            raise UsageError(f"--trace {path}: cannot write the trace ({exc.strerror})") from None

    def header(
        self, question: str, settings: dict[str, Any], inputs: dict[str, Any] | None
    ) -> None:
        self._write(
            {
                "type": "trace_header",
                "format_version": FORMAT_VERSION,
                "rlm_version": __version__,
                "started_at": time.time(),
                "question": question,
                "settings": settings,
                "inputs": inputs,
            }
        )

    def __call__(self, event: Event) -> None:
        if isinstance(event, RootTextDelta):
            return  # the root_reply line carries the whole text; deltas would only repeat it
        data = event.to_json()
        if isinstance(event, SubcallStarted) and not self.full and len(event.prompt) > PROMPT_KEEP:
            data["prompt"] = shorten(event.prompt)
        self._write(data)

    def close(self) -> None:
        self._file.close()

    def _write(self, data: dict[str, Any]) -> None:
        self._file.write(json.dumps(data, ensure_ascii=False) + "\n")


def shorten(text: str) -> dict[str, Any]:
    half = PROMPT_KEEP // 2
    return {
        "head": text[:half],
        "tail": text[-half:],
        "length": len(text),
        "sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
    }

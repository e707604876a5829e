"""How a run ended, for its caller: the `run_finished` summary it emitted, the error when it
failed, and from those its exit code, its `--json` object and the line about lost sub-calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rlm_cli.errors import ExitCode, RlmError, RunStatus
from rlm_cli.events import AnyEvent, RunFinished


@dataclass
class RunResult:
    summary: RunFinished  # the top run's own summary: the same one its trace ends with
    error: RlmError | None = None
    # `strict` (--strict): an answer that rests on failed sub-calls fails the run (exit 7).
    strict: bool = False
    trace: str | None = None  # the trace file, when one was written
    events: list[AnyEvent] = field(default_factory=list, repr=False)

    @classmethod
    def before_start(cls, error: RlmError, trace: str | None = None) -> RunResult:
        """The result of a run that never started (bad input, bad settings, not confirmed)."""
        summary = RunFinished(
            "",
            status=error.status,
            answer=None,
            iterations=0,
            subcalls=0,
            usage={},
            elapsed_s=0.0,
            error=str(error),
        )
        return cls(summary, error, trace=trace)

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    @property
    def status(self) -> RunStatus:
        return self.summary.status

    @property
    def answer(self) -> str | None:
        return self.summary.answer

    @property
    def iterations(self) -> int:
        return self.summary.iterations

    @property
    def subcalls(self) -> int:
        return self.summary.subcalls

    @property
    def usage(self) -> dict[str, Any]:
        return self.summary.usage

    @property
    def elapsed_s(self) -> float:
        return self.summary.elapsed_s

    @property
    def redacted(self) -> int:
        return self.summary.redacted

    @property
    def subcalls_failed(self) -> int:
        """Sub-calls that returned an error string instead of a reply (the whole tree's)."""
        return self.summary.subcalls_failed

    @property
    def failures(self) -> dict[str, int]:
        """Failed sub-calls by kind: "budget", "provider", "context_length", "timeout", "other"."""
        return self.summary.failures

    @property
    def exit_code(self) -> ExitCode:
        if self.error is not None:
            return self.error.exit_code
        if self.status != "ok":
            return ExitCode.LIMIT
        if self.strict and self.subcalls_failed > 0:
            return ExitCode.SUBCALLS_FAILED
        return ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """The one `--json` object. Its keys are a stable contract: add, never rename."""
        return {
            "answer": self.answer,
            "status": self.status,
            "iterations": self.iterations,
            "subcalls": self.subcalls,
            "usage": self.usage or {"input_tokens": 0, "output_tokens": 0, "by_model": {}},
            "elapsed_s": self.elapsed_s,
            "trace": self.trace,
            "error": self.summary.error if self.error is None else str(self.error),
            "redacted": self.redacted,
            "subcalls_failed": self.subcalls_failed,
            "failures": self.failures,
        }

    def subcall_note(self, first: str | None = None) -> tuple[str, str] | None:
        """("warning" or "error", the line to say) when sub-calls failed, else None.

        The root may answer around failed sub-calls (the code gets an error string so it can
        adapt), so by default that is a warning and exit 0; but the answer then rests on less
        than the code asked for, so it is always said, and `strict` (for CI) makes it exit 7. A
        run stopped by a limit keeps its exit 6; the count is still said. `first` is the first
        failure's error, which names the model and the cause (under --quiet nothing else does).
        """
        failed = self.subcalls_failed
        if failed <= 0:
            return None
        kinds = ", ".join(
            f"{kind} {count}"
            for kind, count in sorted(self.failures.items(), key=lambda kv: -kv[1])
        )
        every = failed >= self.subcalls
        if every:
            counted = (
                "its only sub-call failed" if failed == 1 else f"all {failed} sub-calls failed"
            )
        else:
            counted = f"{failed} of {self.subcalls} sub-calls failed"
        counted += f" ({kinds})" if kinds else ""
        if every and self.status == "ok":
            counted += "; the answer rests on none of them"
        if first:
            shown = first if len(first) <= 300 else first[:299] + "…"
            counted += f"; the first: {' '.join(shown.split())}"
        if self.status != "ok":
            return "warning", counted
        if self.strict:
            return "error", f"answered, but {counted} (--strict)"
        return "warning", f"answered, but {counted}; --strict makes this exit 7"

"""The error tree: every failure the user can act on is an RlmError carrying its exit code."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, TypeAlias

# The budgets a run can reach: each is also the status of a run it stopped.
LimitName: TypeAlias = Literal["max_cost", "max_tokens", "max_subcalls", "timeout"]
# How a run ended. "ok": it answered; "max_iterations" and the budget statuses stopped it at a
# limit (exit 6, with a best-effort answer when the last turn gave one); the rest failed it.
RunStatus: TypeAlias = Literal[
    "ok", "error", "interrupted", "not_confirmed", "max_iterations", LimitName
]


class ExitCode(IntEnum):
    """Every exit code of `rlm`, declared once: the error classes below carry them, and the
    `ask --help` epilog and the README's table are made from (and tested against) this list."""

    meaning: str

    def __new__(cls, code: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, code)
        member._value_ = code
        member.meaning = meaning
        return member

    OK = 0, "answered"
    ERROR = 1, "unexpected error"
    USAGE = 2, "usage error (bad flags, missing or unreadable input, empty input)"
    CONFIG = 3, "configuration error (or a sandbox layer unavailable: see `rlm doctor`)"
    AUTH = 4, "provider authentication failed"
    PROVIDER = 5, "provider failure after retries"
    LIMIT = 6, "stopped by a limit (best-effort answer still printed)"
    SUBCALLS_FAILED = 7, "answered, but sub-calls failed (with --strict)"
    NOT_CONFIRMED = 8, "not confirmed: a run over confirm_above_usd was declined at the prompt"
    INTERRUPTED = 130, "interrupted"


class RlmError(Exception):
    """Base of all expected failures. `str(err)` is the one line shown to the user."""

    exit_code: ExitCode = ExitCode.ERROR
    status: RunStatus = "error"


class UsageError(RlmError):
    """Bad flags, a missing or unreadable input, an empty input."""

    exit_code = ExitCode.USAGE


class ConfigError(RlmError):
    """A setting or config file is invalid."""

    exit_code = ExitCode.CONFIG


class SandboxUnavailable(ConfigError):
    """The process sandbox cannot be fully set up on this system, and a weaker one was not
    allowed (`--allow-weaker-sandbox`)."""


class SandboxError(RlmError):
    """The REPL worker could not be started or could not load the inputs."""


class ProviderAuthError(RlmError):
    """The provider rejected the credentials."""

    exit_code = ExitCode.AUTH


class ProviderError(RlmError):
    """The provider failed, after retries where retrying made sense."""

    exit_code = ExitCode.PROVIDER


class ContextLengthError(ProviderError):
    """The prompt does not fit the model's context window."""


class RetryableError(ProviderError):
    """A failure worth another attempt (429, 5xx, connection, timeout, garbled reply)."""

    def __init__(
        self, message: str, retry_after: float | None = None, *, rate_limited: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited  # a 429: the caller should also slow down


class RequestTimeout(RetryableError):
    """A model request ran past --request-timeout."""


class SubcallsFailed(RlmError):
    """The root answered, but sub-calls failed, and `--strict` (setting strict) asked for that to
    fail the run: in CI an answer that rests on lost work must not pass for a success."""

    exit_code = ExitCode.SUBCALLS_FAILED


class NotConfirmed(RlmError):
    """Asked on a terminal to confirm a run whose cost estimate passed `confirm_above_usd`, the
    user said no. Its own code, not 130: nothing was interrupted, and nothing was spent."""

    exit_code = ExitCode.NOT_CONFIRMED
    status = "not_confirmed"


class InternalError(RlmError):
    """A bug: an exception nobody expected. Its cause is kept for --debug."""


class Interrupted(RlmError):
    """Ctrl-C."""

    exit_code = ExitCode.INTERRUPTED
    status = "interrupted"


EXIT_CODES: dict[int, str] = {code.value: code.meaning for code in ExitCode}

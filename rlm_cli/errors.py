"""The error tree: every failure the user can act on is an RlmError carrying its exit code."""

from __future__ import annotations

from typing import Literal, TypeAlias

# The budgets a run can reach: each is also the status of a run it stopped.
LimitName: TypeAlias = Literal["max_cost", "max_tokens", "max_subcalls", "timeout"]
# How a run ended. "ok": it answered; "max_iterations" and the budget statuses stopped it at a
# limit (exit 6, with a best-effort answer when the last turn gave one); the rest failed it.
RunStatus: TypeAlias = Literal[
    "ok", "error", "interrupted", "not_confirmed", "max_iterations", LimitName
]


class RlmError(Exception):
    """Base of all expected failures. `str(err)` is the one line shown to the user."""

    exit_code = 1
    status: RunStatus = "error"


class UsageError(RlmError):
    """Bad flags, a missing or unreadable input, an empty input."""

    exit_code = 2


class ConfigError(RlmError):
    """A setting or config file is invalid."""

    exit_code = 3


class SandboxUnavailable(ConfigError):
    """The process sandbox cannot be fully set up on this system, and a weaker one was not
    allowed (`--allow-weaker-sandbox`)."""


class SandboxError(RlmError):
    """The REPL worker could not be started or could not load the inputs."""


class ProviderAuthError(RlmError):
    """The provider rejected the credentials."""

    exit_code = 4


class ProviderError(RlmError):
    """The provider failed, after retries where retrying made sense."""

    exit_code = 5


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


class LimitReached(RlmError):
    """A budget stopped the run; a best-effort answer may still exist."""

    exit_code = 6


class SubcallsFailed(RlmError):
    """The root answered, but sub-calls failed, and `--strict` (setting strict) asked for that to
    fail the run: in CI an answer that rests on lost work must not pass for a success."""

    exit_code = 7


class NotConfirmed(RlmError):
    """Asked on a terminal to confirm a run whose cost estimate passed `confirm_above_usd`, the
    user said no. Its own code, not 130: nothing was interrupted, and nothing was spent."""

    exit_code = 8
    status = "not_confirmed"


class InternalError(RlmError):
    """A bug: an exception nobody expected. Its cause is kept for --debug."""


class Interrupted(RlmError):
    """Ctrl-C."""

    exit_code = 130
    status = "interrupted"


EXIT_CODES: dict[int, str] = {
    0: "answered",
    1: "unexpected error",
    2: "usage error (bad flags, missing or unreadable input, empty input)",
    3: "configuration error (or a sandbox layer unavailable: see `rlm doctor`)",
    4: "provider authentication failed",
    5: "provider failure after retries",
    6: "stopped by a limit (best-effort answer still printed)",
    7: "answered, but sub-calls failed (with --strict)",
    8: "not confirmed: a run over confirm_above_usd was declined at the prompt",
    130: "interrupted",
}

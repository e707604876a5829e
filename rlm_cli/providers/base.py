"""The Provider protocol and the data that crosses it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from rlm_cli.errors import RetryableError

TextCallback = Callable[[str], None]
# Told of each retry: the attempt that failed, the delay before the next, and why.
RetryCallback = Callable[[int, float, "RetryableError"], None]
Role = Literal["system", "user", "assistant"]
Purpose = Literal["root", "sub"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Usage:
    """Tokens of one call or a sum of calls. `input_tokens` counts all input, including the
    part read from the provider's cache (`cached_input_tokens`) and written to it.

    `estimated`: the server reported no usage (llama.cpp ignores `stream_options`, some servers
    send none at all), so the tokens were counted here, offline, on what was sent and received.
    Unknown usage is never zero; a sum with any estimated part is itself estimated."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.estimated or other.estimated,
        )

    def to_json(self) -> dict[str, int]:
        data: dict[str, int] = {  # "estimated" is a bool, which is an int
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_tokens": self.cache_write_tokens,
        }
        if self.estimated:  # only then: reported figures keep the shape they always had
            data["estimated"] = True
        return data


@dataclass(frozen=True)
class ModelRequest:
    """One model call. `purpose` tells root calls from sub-calls (the scripted provider needs it)."""

    model: str
    messages: tuple[Message, ...]
    purpose: Purpose
    max_output_tokens: int | None = None
    # Told of each retry (attempt number, delay in seconds, reason) so it can become an event.
    on_retry: RetryCallback | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    request_id: str | None = None
    # None when the price of the model is not known: unknown is never reported as free.
    cost_usd: float | None = None
    # Answered from the reply cache: no request was made, and it spent nothing.
    cached: bool = False


class Provider(Protocol):
    """An async model client. Implementations turn their server's errors into rlm_cli.errors."""

    name: str
    # Whether a reply may be stored and replayed: False for the scripted provider, whose replies
    # are free, instant and change with the script.
    cacheable: ClassVar[bool]
    # Whether this kind of provider is sent an API key (a local preset may still run without).
    needs_key: ClassVar[bool]

    def cache_identity(self) -> dict[str, Any]:
        """Everything about this provider's own connection that changes the reply to the same
        ModelRequest: its name, the endpoint it actually sends to, and the settings it applies
        to every request (temperature, reasoning effort, output cap). JSON data, never a secret:
        it becomes part of a cache key."""
        ...

    async def complete(self, request: ModelRequest) -> Completion: ...

    async def stream(self, request: ModelRequest, on_text: TextCallback) -> Completion:
        """Like `complete`, calling `on_text` with each piece of text as it arrives."""
        ...

    async def aclose(self) -> None:
        """Release connections; the provider may be used again afterwards."""
        ...


@dataclass(frozen=True)
class ServedWindow:
    """What a model's server says about its context window, in tokens.

    `tokens` is the window the server enforces (vLLM's max_model_len, llama.cpp's n_ctx per
    slot, Ollama's num_ctx): it wins over every other figure. `ceiling` is only the most the
    model was trained for (llama.cpp's n_ctx_train, Ollama's context_length, which Ollama does
    not use unless num_ctx says so): it caps the other figures without replacing them."""

    tokens: int | None
    ceiling: int | None = None
    said_by: str = ""  # the endpoint and field, for traces: "llama.cpp /props n_ctx"


@runtime_checkable
class WindowReporter(Protocol):
    """A provider that can ask its server what window a model is served with. Kept apart from
    Provider so wrappers (the reply cache) need not forward it; engine/capacity.py looks for it
    on the provider or on what it wraps."""

    async def served_window(self, model: str) -> ServedWindow | None:
        """What the server says (None: it is a hosted API, or it said nothing). Fast (about
        2 s at most), never raises, never sends the key to any host but the provider's own."""
        ...

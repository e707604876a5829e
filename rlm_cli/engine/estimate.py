"""What a run may cost, before it starts: a low and a high bound from the inputs' token count and
the settings' models and prices. `rlm ask` prints it, asks before a costly run, and records it in
the run's `run_started`; `rlm inspect` shows it with its assumptions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlm_cli.config import Settings
from rlm_cli.format import format_usd
from rlm_cli.providers.catalog import Catalog, provider_info

# The assumptions behind a cost range, kept together so the printed explanation stays true. A
# run's cost cannot be known before it runs; the range brackets it. Low: the root model alone, a
# few turns, no sub-calls (a question a grep answers). High: every turn used, and the worker model
# reading every input token once (with prompt overhead and short replies): a map over all chunks.
LOW_TURNS = 3
SYSTEM_TOKENS = 1_500  # system prompt and first message, sent every turn
TURN_GROWTH = 1_500  # each turn adds a reply and its (capped) cell output to the history
TURN_OUTPUT = 500
SUBCALL_OVERHEAD = 1.1  # instructions around each chunk
SUBCALL_REPLY = 0.05  # replies, as a share of what the worker read
COST_NOTE = (
    f"low: the root model alone, {LOW_TURNS} turns, no sub-calls; high: every turn used and the "
    "worker model reading every input token once"
)


@dataclass(frozen=True)
class CostRange:
    low: float | None  # USD; None when a model's price is unknown
    high: float | None
    unknown: tuple[str, ...]  # models without a known price

    def describe(self) -> str:
        if self.low is None or self.high is None:
            return f"cost unknown (no price for {', '.join(self.unknown)}; see `rlm models`)"
        if self.high == 0:
            return "no cost (local or scripted models)"
        return f"est. cost {format_usd(self.low)}–{format_usd(self.high)}"

    def to_json(self) -> dict[str, Any]:
        return {"low_usd": self.low, "high_usd": self.high, "unknown_price": list(self.unknown)}


def cost_range(input_tokens: int, settings: Settings) -> CostRange:
    """What a run over `input_tokens` might cost with these settings' models and prices."""
    root, worker = _prices(settings)
    if root is None or worker is None:
        return CostRange(None, None, unpriced_models(settings))

    def root_cost(turns: int) -> float:
        tokens_in = turns * SYSTEM_TOKENS + TURN_GROWTH * turns * (turns - 1) // 2
        return (tokens_in * root[0] + turns * TURN_OUTPUT * root[1]) / 1e6

    low = root_cost(min(LOW_TURNS, settings.max_iterations))
    read = input_tokens * SUBCALL_OVERHEAD
    high = (
        root_cost(settings.max_iterations)
        + (read * worker[0] + read * SUBCALL_REPLY * worker[1]) / 1e6
    )
    return CostRange(low, high, ())


def unpriced_models(settings: Settings) -> tuple[str, ...]:
    """The models of these settings whose spending no cost budget can see."""
    root, worker = _prices(settings)
    unknown = [settings.root_model] if root is None else []
    unknown += [settings.worker_model] if worker is None else []
    return tuple(dict.fromkeys(unknown))


def unenforceable_cost(settings: Settings) -> str | None:
    """The warning to give before anything is spent when a cost budget is set over a model of
    unknown price: such calls count as nothing, so `--max-cost` would never stop the run."""
    unknown = unpriced_models(settings) if settings.max_cost else ()
    if not unknown:
        return None
    name = settings.source("max_cost")
    models = " and ".join(unknown)
    whose = "its price is" if len(unknown) == 1 else "their prices are"
    return (
        f"{name} cannot be enforced for model{'s' if len(unknown) > 1 else ''} {models}: "
        f"{whose} unknown; give prices with --prices FILE, or bound the run with --max-tokens"
    )


def _prices(settings: Settings) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """(input, output) USD per million tokens of the root and the worker model; None for a model
    whose price is unknown. Local presets and the scripted provider are free: their cost is 0,
    known, exactly as the providers charge it."""
    catalog = Catalog(settings.prices)

    def price(provider: str, model: str) -> tuple[float, float] | None:
        info = provider_info(provider)
        if info.local or info.kind == "scripted":
            return 0.0, 0.0
        facts = catalog.facts(model)
        return None if facts.price is None else (facts.price.input, facts.price.output)

    return (
        price(settings.provider, settings.root_model),
        price(settings.worker_provider, settings.worker_model),
    )

"""`Settings`: every setting of rlm, each declared once (type, default, help, flag, bounds), and
the names derived from those declarations (SPECS, FLAGS, FILE_ONLY, FLAG_PARAMS, DEFAULTS)."""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any

from rlm_cli.config.spec import (
    HIDDEN,
    Spec,
    check_bounds,
    checked_type,
    is_env_name,
    looks_like_key,
    setting,
)

MODELS = "Models and providers"
CALLS = "Model calls"
RUN = "The run"
LIMITS = "Limits: a run stops at the first one reached, with a best-effort answer"
CACHE = "Reply cache"
TRACE = "Trace"
INPUTS = "Inputs"
SANDBOX = "Sandbox"
OUTCOME = "Safety and outcome"


@dataclass(frozen=True)
class Settings:
    provider: str = setting(
        "openai",
        "Root model provider: openai, anthropic, scripted, or a preset of the catalog; `rlm "
        "providers` lists them.",
        MODELS,
    )
    model: str | None = setting(
        None,
        "Root model, the one that writes code to explore the inputs; a stronger one for harder "
        "questions.",
        MODELS,
        default_text="the provider's (gpt-5 for openai)",
        example="gpt-5",
    )
    sub_provider: str | None = setting(
        None,
        "Worker model provider for sub-calls (llm_query), to run them on another vendor or a "
        "local server.",
        MODELS,
        default_text="the root's",
        example="anthropic",
    )
    sub_model: str | None = setting(
        None,
        "Worker model for sub-calls (llm_query); a cheaper one keeps large fan-outs affordable.",
        MODELS,
        default_text="the worker provider's small model (gpt-5-mini for openai)",
        example="gpt-5-mini",
    )
    script: str | None = setting(
        None,
        "Replies (YAML or JSON) for the scripted provider, which runs without any model or key.",
        MODELS,
        default_text="none",
        example="replies.yaml",
        path=True,
    )
    base_url: str | None = setting(
        None,
        "API endpoint, e.g. http://localhost:8000/v1 for a local OpenAI-compatible server.",
        MODELS,
        default_text="the provider's",
        example="http://localhost:8000/v1",
    )
    sub_base_url: str | None = setting(
        None,
        "API endpoint of the worker provider, when sub-calls go to another server.",
        MODELS,
        default_text="base_url when the worker uses the root's provider",
        example="http://localhost:8001/v1",
    )
    api_key_env: str | None = setting(
        None,
        "The NAME of the environment variable holding the API key (never the key itself).",
        MODELS,
        default_text="the provider's, e.g. OPENAI_API_KEY",
        example="OPENAI_API_KEY",
        key_env=True,
    )
    sub_api_key_env: str | None = setting(
        None,
        "The NAME of the environment variable holding the worker provider's API key.",
        MODELS,
        default_text="the worker provider's",
        example="ANTHROPIC_API_KEY",
        key_env=True,
    )
    temperature: float | None = setting(
        None,
        "Sampling temperature, 0 to 2; lower gives more repeatable replies.",
        CALLS,
        ge=0,
        le=2,
        default_text="the model's",
        example=0.2,
    )
    max_output_tokens: int | None = setting(
        None,
        "Most tokens one model reply may have; raise it when replies are cut off.",
        CALLS,
        ge=1,
        default_text="the model's",
        example=8000,
    )
    reasoning_effort: str | None = setting(
        None,
        "low, medium or high: OpenAI reasoning effort, or Anthropic extended thinking; higher "
        "thinks longer and costs more.",
        CALLS,
        choices=("low", "medium", "high"),
        default_text="the model's",
        example="medium",
    )
    max_retries: int = setting(
        6,
        "Attempts per model call on 429, 5xx and timeouts; raise it for a flaky or rate-limited "
        "endpoint.",
        CALLS,
        ge=1,
        le=20,
        unit="attempts",
    )
    request_timeout: float = setting(
        600.0,
        "Seconds one model request may take; raise it for slow local models.",
        CALLS,
        gt=0,
        le=3600,
        unit="seconds",
    )
    sub_window: int | None = setting(
        None,
        "Context window in tokens of a worker model rlm does not know and its server does not "
        "report; sub-call prompts and chunks are sized to fit it.",
        CALLS,
        ge=1024,
        unit="tokens",
        default_text="the catalog's, else the server's, else 32,768",
        example=131072,
    )
    prices: str | None = setting(
        None,
        "YAML file of model prices laid over the built-in table, for models it lacks or prices "
        "that changed.",
        CALLS,
        default_text="the built-in table",
        example="prices.yaml",
        path=True,
    )
    max_iterations: int = setting(
        30,
        "Root turns before the root is asked for its best answer; raise it for questions that "
        "need more exploring.",
        RUN,
        ge=1,
        le=1000,
    )
    cell_timeout: float = setting(
        120.0,
        "Seconds one code cell may run before it is interrupted.",
        RUN,
        gt=0,
        le=86_400,
        unit="seconds",
    )
    max_concurrency: int = setting(
        32,
        "Sub-calls in flight at once, per provider (halved on 429s); lower it for a "
        "rate-limited key or a small local server.",
        RUN,
        ge=1,
        le=1024,
    )
    max_depth: int = setting(
        1,
        "Recursion depth: 1 makes rlm_query a plain llm_query, 2 lets the root start child "
        "RLMs, up to 5.",
        RUN,
        ge=1,
        le=5,
    )
    system_prompt: str | None = setting(
        None,
        "The method text the root model is given: a file of your own (with the same "
        "{placeholders}), or `official` for the reference implementation's prompt.",
        RUN,
        default_text="rlm's own",
        example="official",
    )
    direct_below: int | None = setting(
        None,
        "Answer inputs smaller than this many tokens with one plain root call, no REPL (a plain "
        "model does better on small inputs).",
        RUN,
        ge=1,
        unit="tokens",
        default_text="off",
        example=8000,
    )
    output_limit: int = setting(
        20_000,
        "Characters of a cell's output shown to the root model; more shows more at once but "
        "fills its context sooner.",
        RUN,
        ge=1_000,
        le=10_000_000,
    )
    max_cost: float | None = setting(
        None,
        "Stop at this many US dollars (a tenth kept for the last turn).",
        LIMITS,
        gt=0,
        default_text="no limit",
        example=2.5,
    )
    max_tokens: int | None = setting(
        None,
        "Stop at this many tokens, input plus output, all models.",
        LIMITS,
        gt=0,
        default_text="no limit",
        example=2_000_000,
    )
    max_subcalls: int | None = setting(
        None,
        "Stop at this many sub-calls; a bigger fan-out fails at once.",
        LIMITS,
        gt=0,
        default_text="no limit",
        example=500,
    )
    timeout: float | None = setting(
        None,
        "Stop after this many seconds of wall clock, child runs included.",
        LIMITS,
        gt=0,
        default_text="no limit",
        example=900,
    )
    cache: bool = setting(
        True,
        "Read and write the sub-call reply cache, so asking again pays only for new sub-calls.",
        CACHE,
        flag="--no-cache",
    )
    cache_root: bool = setting(
        False, "Cache root-model replies too, which replays whole runs (demos, debugging).", CACHE
    )
    trace: str | None = setting(
        None,
        "Write every step of each run to this JSON Lines file (see `rlm trace`).",
        TRACE,
        default_text="none",
        example="run.jsonl",
    )
    trace_full: bool = setting(
        False, "Keep long sub-call prompts whole in the trace instead of shortened.", TRACE
    )
    include: tuple[str, ...] = setting(
        (),
        "Load only files matching these globs (.gitignore syntax, e.g. '*.py', 'src/**') inside "
        "directories and archives; secret files (.env, keys) only when a glob names them.",
        INPUTS,
        default_text="every file",
        example=["*.py", "docs/**"],
    )
    exclude: tuple[str, ...] = setting(
        (),
        "Skip files and folders matching these globs (.gitignore syntax, e.g. 'tests/', "
        "'*.min.js') inside directories and archives.",
        INPUTS,
        default_text="none",
        example=["tests/", "*.min.js"],
    )
    max_file_size: int = setting(
        100 * 1024 * 1024,
        "Bytes of text above which a file inside a directory or archive is skipped (the flag "
        "also takes 500KB, 200MB, 2GiB).",
        INPUTS,
        ge=1,
        unit="byte",
        default_text="100MiB",
    )
    max_memory_share: float = setting(
        0.4,
        "Refuse inputs larger than this share of memory, as loading a file peaks near twice its "
        "size.",
        INPUTS,
        gt=0,
        le=0.9,
    )
    sandbox: str = setting(
        "process",
        "Where cells run: process (an isolated worker: no network, no files but the inputs, no "
        "host processes; see `rlm doctor`) or none (no isolation, trusted code only).",
        SANDBOX,
        choices=("process", "none"),
    )
    allow_weaker_sandbox: bool = setting(
        False,
        "Run even where some layers of the process sandbox are unavailable (`rlm doctor` lists "
        "them).",
        SANDBOX,
    )
    worker_memory_mb: int | None = setting(
        None,
        "MiB of memory the worker may use; set it when the automatic size is too small or too "
        "large.",
        SANDBOX,
        flag="--worker-memory",
        ge=256,
        unit="MiB",
        default_text="sized from the inputs and the machine",
        example=4096,
    )
    redact_secrets: bool = setting(
        False,
        "Mask API keys, private keys and tokens in sub-call prompts before they are sent.",
        OUTCOME,
    )
    strict: bool = setting(
        False,
        "Exit 7 instead of 0 when any sub-call failed, even if the root answered (for CI).",
        OUTCOME,
    )
    confirm_above_usd: float = setting(
        5.0,
        "On a terminal, ask before a run whose high cost estimate is above this many US dollars "
        "(--yes skips the question).",
        OUTCOME,
        file_only=True,
        ge=0,
        default_text="$5",
    )
    # Where each non-default value came from ("config file PATH" or "flag"); not a setting itself.
    origin: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        """Every Settings is valid, however it was made: the types (a YAML list of globs
        becomes a tuple, so Settings stays hashable), then the bounds."""
        for name, hint in hints().items():
            spec, origin = SPECS[name], self.origin.get(name)
            object.__setattr__(
                self, name, checked_type(name, spec, hint, getattr(self, name), origin)
            )
            check_bounds(name, spec, getattr(self, name), origin)

    @property
    def root_model(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.provider, self.provider)

    @property
    def worker_provider(self) -> str:
        return self.sub_provider or self.provider

    @property
    def worker_base_url(self) -> str | None:
        """The worker's endpoint when it is not its provider's default: --sub-base-url, or the
        root's --base-url when the worker uses the root's provider."""
        same_provider = self.sub_provider in (None, self.provider)
        return self.sub_base_url or (self.base_url if same_provider else None)

    @property
    def worker_model(self) -> str:
        if self.sub_model:
            return self.sub_model
        if self.sub_provider and self.sub_provider != self.provider:
            return DEFAULT_SUB_MODELS.get(self.sub_provider, self.sub_provider)
        if self.worker_base_url is not None:
            # A server of the user's (--base-url) serves the models it serves: OpenAI's default
            # worker model would be a 404 on every sub-call, the root's model is known to work.
            # (A worker on another server, --sub-base-url, must be named: see make_providers.)
            return self.root_model
        return DEFAULT_SUB_MODELS.get(self.provider, self.root_model)

    def public(self) -> dict[str, Any]:
        """The settings as recorded in traces and `--json`. No secrets belong in Settings, but
        a key pasted where a name or URL goes is hidden rather than recorded. Values are as
        JSON holds them (globs as a list), so a trace's header reads back equal."""
        data: dict[str, Any] = {}
        for name in SPECS:
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, tuple) else value
        data["root_model"] = self.root_model
        data["worker_model"] = self.worker_model
        return public_values(data)

    def source(self, name: str) -> str:
        """How to name setting `name` to the user, by where its value came from: its flag
        (`--max-cost`), or `max_cost (config file PATH)`, or `max_cost (default)`."""
        origin = self.origin.get(name, "default")
        flag = SPECS[name].flag
        return flag if origin == "flag" and flag else f"{name} ({origin})"


def _specs() -> dict[str, Spec]:
    """Each setting's declaration, its flag spelled out: `--max-cost` for max_cost, unless the
    declaration names another (`--no-cache`) or none (file only)."""
    specs = {}
    for f in dataclasses.fields(Settings):
        if "spec" in f.metadata:
            spec = f.metadata["spec"]
            flag = "--" + f.name.replace("_", "-") if spec.flag == "" else spec.flag
            specs[f.name] = dataclasses.replace(spec, flag=flag)
    return specs


SPECS = _specs()
FIELD_NAMES = frozenset(SPECS)
PATH_SETTINGS = frozenset(name for name, spec in SPECS.items() if spec.path)
# Settings that name an environment variable holding a key (never the key itself), and their flag.
KEY_ENV_SETTINGS = {name: spec.flag or name for name, spec in SPECS.items() if spec.key_env}
# Setting -> its command-line flag; and the settings with none (config file or library only).
FLAGS = {name: spec.flag for name, spec in SPECS.items() if spec.flag}
FILE_ONLY = tuple(name for name, spec in SPECS.items() if not spec.flag)
# The flag's parameter name as Typer passes it (`--no-cache` -> no_cache) -> its setting.
FLAG_PARAMS = {flag.lstrip("-").replace("-", "_"): name for name, flag in FLAGS.items()}
SANDBOXES = SPECS["sandbox"].choices
DEFAULT_MODELS = {"openai": "gpt-5", "anthropic": "claude-sonnet-4-5", "scripted": "scripted-root"}
DEFAULT_SUB_MODELS = {
    "openai": "gpt-5-mini",
    "anthropic": "claude-haiku-4-5",
    "scripted": "scripted-worker",
}
DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(Settings) if f.name in SPECS
}


def public_values(values: dict[str, Any]) -> dict[str, Any]:
    """Setting values safe to print, trace or put in --json: a value that looks like a key
    (anywhere; in a key-variable setting, anything that is not a variable name) is hidden."""
    safe = {}
    for name, value in values.items():
        hidden = looks_like_key(value) or (
            name in KEY_ENV_SETTINGS and isinstance(value, str) and not is_env_name(value)
        )
        safe[name] = HIDDEN if hidden else value
    return safe


@functools.cache
def hints() -> dict[str, Any]:
    """Each setting's real type, from the annotations (strings under `from __future__`)."""
    hints = typing.get_type_hints(Settings)
    return {name: hints[name] for name in SPECS}

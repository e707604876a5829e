"""rlm: ask questions of files too big for any model's context window (Recursive Language Models)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["RLM", "__version__"]

if TYPE_CHECKING:
    from rlm_cli.api import RLM


def __getattr__(name: str) -> Any:
    # Lazy, so that `rlm --help` and the sandbox worker do not pay for the engine's imports.
    if name == "RLM":
        from rlm_cli.api import RLM

        return RLM
    raise AttributeError(name)

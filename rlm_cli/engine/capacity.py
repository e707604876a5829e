"""One true capacity per worker model: the window the root is told and the guard refuses past.

The catalog knows hosted models; for others the window is learned from the server where it says,
else taken from the sub_window setting, else the catalog's conservative default.
"""

from __future__ import annotations

from rlm_cli.config import Settings
from rlm_cli.providers.base import Provider
from rlm_cli.providers.catalog import Catalog


async def learn(catalog: Catalog, worker: Provider, settings: Settings) -> None:
    """Settle the worker model's window in `catalog` before the run starts (stub)."""

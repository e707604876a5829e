"""Fixtures of the hostile-code suite (helpers in hostile.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from security.hostile import Arena


@pytest.fixture
def arena(tmp_path: Path) -> Iterator[Arena]:
    """A canary HOME (`.ssh/id_rsa` holding a secret, `.bashrc`, `.config/rlm/config.yaml`; HOME
    and XDG_CONFIG_HOME point there for `rlm ask`), secrets in rlm's environment
    (OPENAI_API_KEY, ANTHROPIC_API_KEY, RLM_CANARY_SECRET), in a file and a file name beside
    the inputs, in a file name in the inputs' parent, in rlm's stdin and in a file in the
    host's /tmp; loopback TCP/UDP, path-named and abstract AF_UNIX listeners recording any
    contact; and a mark for the processes a cell starts (killed by pid at teardown)."""
    place = Arena(tmp_path)
    try:
        yield place
    finally:
        place.close()

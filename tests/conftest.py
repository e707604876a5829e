from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own reply cache and no user config: runs must not meet each other."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("RLM_CONFIG", raising=False)


def repl(code: str, prose: str = "") -> str:
    """A root reply holding one ```repl block."""
    return f"{prose}\n```repl\n{code}\n```\n"


@pytest.fixture
def write_script(tmp_path: Path) -> Callable[..., str]:
    """Write a scripted-provider file and return its path."""

    def write(
        root: list[str], sub: list[dict[str, str]] | None = None, name: str = "s.yaml"
    ) -> str:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"root": root, "sub": sub or [{"reply": "ok"}]}))
        return str(path)

    return write


def run_rlm(
    *args: str, stdin: bytes | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the real `rlm` command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "rlm_cli", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from typer.testing import Result

ROOT = Path(__file__).resolve().parent.parent


# The variables the vendor SDKs read on their own: a key sends a forgotten default model to a
# vendor, and a base URL sends the loopback server's traffic elsewhere.
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
)


@pytest.fixture(autouse=True)
def private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own reply cache, no user config and no provider key: runs must not
    meet each other, and no test can reach a vendor by accident (one that needs a key sets a
    fake one for the loopback server). Subprocesses inherit this environment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.delenv("RLM_CONFIG", raising=False)
    for name in {*PROVIDER_VARIABLES, *(n for n in os.environ if n.endswith("_API_KEY"))}:
        monkeypatch.delenv(name, raising=False)


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


RLM_COMMAND = [sys.executable, "-m", "rlm_cli"]


def run_rlm(
    *args: str,
    stdin: bytes | None = None,
    timeout: float = 60,
    env: Mapping[str, str | None] | None = None,
    stdin_fd: int | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run the real `rlm` command in a subprocess, as a user would.

    `env` adds to this process's environment; a None value unsets that variable. `stdin_fd` (a
    terminal, say) is read as standard input instead of the `stdin` bytes.
    """
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [*RLM_COMMAND, *args],
        input=None if stdin_fd is not None else stdin or b"",
        stdin=stdin_fd,
        capture_output=True,
        timeout=timeout,
        env={name: value for name, value in environment.items() if value is not None},
    )


def invoke_rlm(
    *args: str, stdin: bytes = b"", env: Mapping[str, str | None] | None = None
) -> Result:
    """Run `rlm` in this process with Typer's CliRunner: flags, settings, errors and exit codes
    as a user meets them, without a Python start (about 0.6 s of CPU each, and the vendor SDKs'
    imports on top). `env` as for `run_rlm`. A run still starts its sandbox worker as a real
    process; what needs a terminal, a signal or the exact bytes of stdout uses `run_rlm`."""
    from typer.testing import CliRunner

    from rlm_cli.cli import app

    result = CliRunner().invoke(app, list(args), input=stdin, env=dict(env or {}))
    # CliRunner turns an exception into exit 1; `rlm` itself never lets one escape.
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# What start_rlm started in the running test, for `close_started` to clean up after it.
_started: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def close_started() -> Iterator[None]:
    """After each test, what `start_rlm` started is gone and its pipes are closed: an
    unclosed pipe is a ResourceWarning (an error under filterwarnings), and it would be raised
    in whichever later test the garbage collector happens to run in."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def command_paths() -> Iterator[tuple[str, ...]]:
    """Every command and group of `rlm` (() is `rlm` itself), walked from the Typer app: a new
    command is covered by the tests that go through them all."""
    import typer.main

    from rlm_cli.cli import app

    def walk(command: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, (*path, name))

    yield from walk(typer.main.get_command(app), ())


def start_rlm(*args: str, stdin: bytes = b"text", **popen: Any) -> subprocess.Popen[bytes]:
    """Start the real `rlm` command in the background, with `stdin` piped in and closed.

    `popen` goes to subprocess.Popen as it is (stdout, stderr, env...).
    """
    proc = subprocess.Popen([*RLM_COMMAND, *args], stdin=subprocess.PIPE, **popen)
    _started.append(proc)
    assert proc.stdin is not None
    proc.stdin.write(stdin)
    proc.stdin.close()
    return proc


def ask_scripted(script: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    """`rlm ask` on the scripted provider playing `script`; the rest as for `run_rlm`."""
    return run_rlm("ask", "--provider", "scripted", "--script", script, *args, **kwargs)


def invoke_scripted(script: str, *args: str, **kwargs: Any) -> Result:
    """`rlm ask` on the scripted provider playing `script`, in process as by `invoke_rlm`."""
    return invoke_rlm("ask", "--provider", "scripted", "--script", script, *args, **kwargs)


def start_scripted(script: str, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    """`rlm ask` on the scripted provider playing `script`, started as by `start_rlm`."""
    return start_rlm("ask", "--provider", "scripted", "--script", script, *args, **kwargs)


def heavy_imports(statement: str) -> list[str]:
    """Which of Typer, Rich and the vendor SDKs a fresh interpreter holds after `statement`."""
    code = (
        f"import sys\n{statement}\n"
        "print(*sorted(m for m in ('typer', 'rich', 'openai', 'anthropic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def wait_until(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def process_tree(root: int) -> list[int]:
    """Live processes descended from `root` (itself excluded), from the host's /proc: the
    sandbox's PID namespace hides host pids from the worker, not the worker's from the host."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents[int(name)] = int(fields[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (zombies excluded)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as cmdline:
                if marker.encode() not in cmdline.read():
                    continue
            with open(f"/proc/{name}/stat") as stat:
                if stat.read().rsplit(") ", 1)[1][:1] == "Z":
                    continue
        except OSError:
            continue
        found.append(int(name))
    return found


def read_pty(fd: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> bytes:
    """What a pseudo-terminal's other end receives until `proc` ends (or `timeout`)."""
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed (Linux reports EIO)
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    return output

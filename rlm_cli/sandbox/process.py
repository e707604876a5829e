"""The worker process: how the host starts it, learns of its exit, signals it and kills it.

The worker runs code a model wrote, so nothing here trusts it: it starts in a session of its own
(no terminal; Ctrl-C reaches the host only) with an environment of a few harmless variables, its
stderr is read as it comes and only its end kept, and its exit is watched through a pidfd, never
through a pipe that a process its cells started may still hold. In the process sandbox the
host also watches its process tree (`watch`) and kills it past a limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import rlm_cli
from rlm_cli.errors import SandboxError
from rlm_cli.sandbox import watch
from rlm_cli.sandbox.policy import Policy

# Only these variables reach the worker: API keys and other secrets must never be visible to
# model-written code. HOME and TMPDIR point into the worker's private directory.
ENV_PASSED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SYSTEMROOT")
STDERR_KEPT = 4000
PR_SET_DUMPABLE = 4
# Run the worker package from wherever rlm_cli is installed, by any interpreter (tests run it as
# another user with another Python): -I keeps the environment and the user's site out.
WORKER_MAIN = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from rlm_cli.sandbox.worker.__main__ import main; main()"
)
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(rlm_cli.__file__)))


@dataclass
class WorkerProcess:
    """One worker process and the host's ends of its pipes."""

    popen: subprocess.Popen[bytes]
    writer: asyncio.StreamWriter
    exited: asyncio.Future[int]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # The host's reading ends (stdout, stderr): closed by `stop`, even if their EOF never came.
    readers: list[asyncio.BaseTransport] = field(default_factory=list)
    stderr_tail: bytearray = field(default_factory=bytearray)
    violation: str | None = None  # why the host stopped it ("broke the protocol (...)")
    isolated: bool = False  # in its own PID namespace (known once it is ready)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, signum: int) -> None:
        """To the worker's process group: the worker and the processes its cells started."""
        if not self.exited.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signum)

    def kill(self) -> None:
        """SIGKILL the worker's process group. In the process sandbox the launcher's death also
        ends the worker's PID namespace, and every process in it, wherever their group; so once
        it has exited and been reaped, its pid (which another process may now have) is left
        alone."""
        if self.exited.done() and self.isolated:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def stop_for(self, violation: str) -> None:
        """Kill the worker for breaking a rule; `violation` completes "it ..." in the death note."""
        self.violation = violation
        self.kill()

    async def stop(self) -> None:
        """Kill it, give it a moment to be reaped, and let go of the host's ends and readers."""
        self.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.exited), 5)
        # Whatever still holds the other ends of the pipes, the host lets go of its own.
        self.writer.close()
        for reader in self.readers:
            reader.close()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def exit_code(self, within: float) -> int | None:
        """Its exit code, waiting up to `within` seconds for it (None if it has not exited)."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(self.exited), within)
        return None

    def death_detail(self) -> str:
        """Why it is gone, as far as the host knows: the rule it broke, or its stderr's end."""
        if self.violation:
            return f"it {self.violation}"
        return bytes(self.stderr_tail).decode("utf-8", "replace").strip()[-500:]


async def launch(
    python: list[str], policy: Policy, workdir: str
) -> tuple[WorkerProcess, asyncio.StreamReader]:
    """Start a worker by `python` under `policy`, in `workdir`; returns it and the stream of its
    frames (its stdout), for the caller to read. Raises SandboxError if it cannot be started."""
    loop = asyncio.get_running_loop()
    env = {key: os.environ[key] for key in ENV_PASSED if key in os.environ}
    # One malloc arena per thread would reserve 64 MiB of address space each, against the
    # worker's address-space limit; two are plenty for a REPL.
    env.update(HOME=workdir, TMPDIR=workdir, MALLOC_ARENA_MAX="2")
    command = [*python, "-I", "-B", "-u", "-c", WORKER_MAIN, PACKAGE_ROOT]
    try:
        popen = subprocess.Popen(
            [*command, json.dumps({**policy.wire(), "tmp_dir": workdir})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=workdir,
            start_new_session=True,  # no controlling terminal; Ctrl-C reaches the host only
        )
    except OSError as exc:
        raise SandboxError(f"cannot start the REPL worker {command[0]}: {exc}") from None
    assert popen.stdin and popen.stdout and popen.stderr
    frames = asyncio.StreamReader()
    reading, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(frames), popen.stdout
    )
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, popen.stdin
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    proc = WorkerProcess(popen, writer, _watch_exit(popen), readers=[reading])
    errors = asyncio.StreamReader()
    reading, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(errors), popen.stderr
    )
    proc.readers.append(reading)
    proc.tasks.append(asyncio.create_task(_keep_tail(errors, proc.stderr_tail)))
    if policy.mode == "process" and os.path.exists(f"/proc/{popen.pid}/task"):
        proc.tasks.append(asyncio.create_task(_guard(proc, policy)))
    return proc, frames


async def _guard(proc: WorkerProcess, policy: Policy) -> None:
    """Stop the worker once its process tree passes the policy's memory or process limit."""
    overrun = await watch.first_overrun(
        proc.pid, proc.exited, policy.memory_bytes, policy.processes
    )
    if overrun is not None:
        proc.stop_for(overrun)


def _watch_exit(popen: subprocess.Popen[bytes]) -> asyncio.Future[int]:
    """A future for the process's exit, whoever still holds its pipes (a pidfd on Linux)."""
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[int] = loop.create_future()
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        waiting = loop.run_in_executor(None, popen.wait)

        def on_wait(done: asyncio.Future[int]) -> None:
            if not exited.done():
                exited.set_result(done.result())

        waiting.add_done_callback(on_wait)
        return exited

    def on_exit() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if not exited.done():
            exited.set_result(popen.wait())

    loop.add_reader(pidfd, on_exit)
    return exited


async def _keep_tail(stream: asyncio.StreamReader, tail: bytearray) -> None:
    """Read the worker's stderr as it comes, keeping only its end (for the death note)."""
    while chunk := await stream.read(65536):
        tail += chunk
        del tail[:-STDERR_KEPT]


_hidden = False


def hide_environment() -> None:
    """Make this process's /proc entries (environ, mem) unreadable to other processes of the same
    user: a worker outside the process sandbox (`--sandbox none`) could otherwise read the API
    keys from /proc/<host pid>/environ. Linux only; root can still read them, which is one of the
    things the process sandbox's namespaces stop. Once per process: the flag it sets stays."""
    global _hidden
    if _hidden or not sys.platform.startswith("linux"):
        return
    _hidden = True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass

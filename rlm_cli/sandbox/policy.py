"""What the worker is allowed: the sandbox mode and the limits, sized from the run and the machine.

The host builds a Policy and passes it to the worker on its command line (nothing in it is
secret), with `tmp_dir`, the worker's private temporary directory; the worker applies it (`rlm_cli.sandbox.worker.confine`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rlm_cli.inputs import memory_bytes

Mode = Literal["process", "none"]

GIB = 1024**3
# Threads count as processes for RLIMIT_NPROC: room for a thread pool of sub-calls and the tools
# a cell may start, not for a fork bomb.
PROCESSES = 256
OPEN_FILES = 1024


@dataclass(frozen=True)
class Policy:
    mode: Mode
    memory_bytes: int  # address space of each worker process
    tmp_bytes: int  # the private tmpfs, and the largest file the worker may write
    cpu_per_cell: float  # CPU seconds one cell may use, whatever its wall clock
    cpu_total: int  # CPU seconds of one worker process over its life
    processes: int = PROCESSES
    open_files: int = OPEN_FILES
    allow_weaker: bool = False  # host-only: run when some layers are unavailable
    # Layers the worker leaves out, as if this system lacked them: for testing how runs degrade
    # (`RLM_SANDBOX_SKIP=landlock,seccomp`); nobody who can set rlm's environment needs a hole.
    skip: tuple[str, ...] = ()

    def wire(self) -> dict[str, Any]:
        return asdict(self)


def make_policy(
    mode: Mode,
    *,
    input_bytes: int,
    cell_timeout: float,
    max_iterations: int,
    memory_mib: int | None = None,
    allow_weaker: bool = False,
) -> Policy:
    machine = memory_bytes()
    if memory_mib is not None:
        memory = memory_mib * 1024 * 1024
    else:
        # Loading peaks near twice the text (bytes and str together), and cells make copies:
        # three times the inputs plus a gigabyte for the interpreter, threads and the model's
        # own data; never less than 2 GiB, never more than the machine has.
        memory = min(max(3 * input_bytes + GIB, 2 * GIB), machine)
    cores = os.cpu_count() or 1
    per_cell = cell_timeout * cores + 5  # every core busy for the whole cell, and some slack
    return Policy(
        mode=mode,
        memory_bytes=memory,
        tmp_bytes=min(GIB, machine // 8),
        cpu_per_cell=per_cell,
        cpu_total=int(max(per_cell * (max_iterations + 1), 600)),
        allow_weaker=allow_weaker,
        skip=tuple(name for name in os.environ.get("RLM_SANDBOX_SKIP", "").split(",") if name),
    )

"""The host's watch of the worker's process tree: its memory in total and its number of processes.

The address-space limit holds per process, and the kernel does not apply the process limit to
root's uid; this watch holds the worker and every process its cells started to the same memory
in total and the same number of processes, so forks cannot take the machine. It reads Linux /proc
only, and stops nothing itself: it says what was overrun (`first_overrun`), and the caller stops
the worker.
"""

from __future__ import annotations

import asyncio
import os

WATCH_S = 0.1
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# The launcher and PID 1 of the worker's namespace count in its tree, but are not the cells'.
SUPERVISORS = 2


async def first_overrun(
    pid: int, exited: asyncio.Future[int], memory: int, processes: int
) -> str | None:
    """Sample the tree under `pid` every WATCH_S until it exits (None) or passes a limit: then
    what it did, as a phrase for "The REPL worker was stopped: it ..."."""
    while not exited.done():
        await asyncio.sleep(WATCH_S)
        used, pids, threads = tree_usage(pid)  # threads count, as for NPROC
        if used > memory:  # RSS counts pages forks share once in each: confirm by PSS
            used = sum(_pss(member) for member in pids)
        if used > memory:
            return (
                f"used {used >> 20:,} MiB of memory with the processes its cells started "
                f"(the limit is {memory >> 20:,} MiB)"
            )
        if threads > processes + SUPERVISORS:
            return f"started more than {processes} processes and threads (the limit)"
    return None


def tree_usage(root: int) -> tuple[int, list[int], int]:
    """Resident bytes of `root` and all its descendants, their pids, and their threads (Linux
    /proc; what cannot be read counts as nothing)."""
    total, threads, pending, seen = 0, 0, [root], set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE
            tasks = os.listdir(f"/proc/{pid}/task")
            threads += len(tasks)
            for task in tasks:
                with open(f"/proc/{pid}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total, sorted(seen), threads


def _pss(pid: int) -> int:
    """Proportional set size: shared pages split among the processes sharing them. Dearer to
    read than RSS (the kernel walks the page tables), so only read to confirm."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0

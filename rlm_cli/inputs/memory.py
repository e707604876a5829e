"""How much memory this machine (or its container) has: the bound for inputs and the sandbox."""

from __future__ import annotations

import os

# cgroup v2, then v1: a container's limit is often far below the machine's memory, and the
# worker that loads the inputs is killed at the container's limit, not the machine's.
CGROUP_LIMIT_FILES = (
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
)


def memory_bytes() -> int:
    """The machine's memory, or the container's limit when that is lower."""
    total = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for limit_file in CGROUP_LIMIT_FILES:
        try:
            with open(limit_file) as handle:
                value = handle.read().strip()
        except OSError:
            continue
        if value.isdigit():  # cgroup v2 writes "max" when there is no limit
            total = min(total, int(value))
    return total

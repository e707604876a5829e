"""Confinement of the worker (Linux): namespaces, Landlock, seccomp, capabilities and limits.

Model-written code runs in this process, and the model reads the user's inputs, so a cell is
treated as an attack. Two steps, both run before any cell, each reporting one `Layer` per name
in LAYERS (active, or not and why):

`isolate(policy)`, first thing at start-up while the process is still single-threaded: new user,
PID, mount, IPC, UTS and network namespaces under a launcher and a PID 1 of their own; a private
/proc, every host mount read-only, a size-capped private tmpfs on the temporary directory and on
/dev/shm (`namespaces`).

`restrict(policy, readable)`, once the `init` frame has named the inputs:
  - rlimits: address space, CPU seconds, processes, file size, open files, no core dumps;
  - as root, the real uid becomes `nobody` (`namespaces.REAL_UID`); no_new_privs, then every
    capability dropped (bounding set, ambient, effective, permitted);
  - Landlock (`landlock`): read the inputs, the Python installation, system libraries and the
    worker's own /proc entries; read and write only the temporary directory and /dev/shm; no
    TCP bind or connect; no signals to, and no abstract sockets of, processes outside;
  - seccomp (`seccomp`): no sockets but IP (no Unix-socket connections to host services), no
    TIOCSTI, no set*id, memfd or SysV shared memory, no io_uring, ptrace, keyrings, bpf, perf
    events, mount or new namespaces; other system-call ABIs kill the process.

This module runs the steps and sets the rlimits and privileges itself; `libc` holds the ctypes
calls the steps share. Standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import struct
import sys
from typing import Any

from rlm_cli.sandbox.worker import landlock, namespaces, seccomp
from rlm_cli.sandbox.worker.libc import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    PR_SET_NO_NEW_PRIVS,
    check,
    libc,
)
from rlm_cli.sandbox.worker.protocol import LAYERS, Layer, layer

# Policy.skip: layers left out on purpose, to see how a run behaves on a system without them.
SKIPPED = "left out on purpose (RLM_SANDBOX_SKIP)"


def off(why: str) -> dict[str, Layer]:
    """Every layer reported inactive, for `why` (`--sandbox none`)."""
    return {name: layer(False, why) for name in LAYERS}


# ----- step 1: namespaces -----


def isolate(policy: dict[str, Any]) -> dict[str, Layer]:
    """Enter new namespaces (`namespaces.isolate`); returns (in the worker proper only) the
    namespaces layer report."""
    if not sys.platform.startswith("linux"):
        return {"namespaces": layer(False, f"not available on {sys.platform}")}
    if "namespaces" in policy.get("skip", ()):
        return {"namespaces": layer(False, SKIPPED)}
    return {"namespaces": namespaces.isolate(policy)}


# ----- step 2: limits, privileges, Landlock, seccomp -----


def restrict(policy: dict[str, Any], readable: list[str]) -> dict[str, Layer]:
    """Everything after the namespaces; `readable` are the input files the worker may read."""
    report: dict[str, Layer] = {"terminal": _terminal()}  # before Landlock denies /dev/tty
    report["limits"] = _limits(policy)
    if not sys.platform.startswith("linux"):
        for name in ("privileges", "landlock", "seccomp"):
            report[name] = layer(False, f"not available on {sys.platform}")
        return report
    steps = {
        "privileges": _drop_privileges,
        "landlock": lambda: landlock.apply(policy, readable),
        "seccomp": seccomp.apply,
    }
    for name, step in steps.items():
        report[name] = layer(False, SKIPPED) if name in policy.get("skip", ()) else step()
    return report


def _limits(policy: dict[str, Any]) -> Layer:
    limits = {
        resource.RLIMIT_AS: int(policy["memory_bytes"]),
        resource.RLIMIT_NPROC: int(policy["processes"]),
        resource.RLIMIT_FSIZE: int(policy["tmp_bytes"]),
        resource.RLIMIT_NOFILE: int(policy["open_files"]),
        resource.RLIMIT_CORE: 0,
    }
    failed = []
    for which, value in limits.items():
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            failed.append(which)
    # CPU: the hard limit bounds the whole life of every process; each cell re-arms the soft
    # limit (Worker.run_cell), so a cell that ignores SIGINT is still stopped by SIGXCPU.
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (int(policy["cpu_total"]),) * 2)
    except (ValueError, OSError):
        failed.append(resource.RLIMIT_CPU)
    if failed:
        return layer(False, f"could not set {len(failed)} of 6 limits")
    mib = int(policy["memory_bytes"]) >> 20
    return layer(
        True,
        f"memory {mib:,} MiB, CPU {policy['cpu_per_cell']:g} s a cell, "
        f"{policy['processes']} processes, files {int(policy['tmp_bytes']) >> 20:,} MiB",
    )


def _drop_privileges() -> Layer:
    lib = libc()
    try:
        nobody = namespaces.drop_real_uid()  # while CAP_SETUID is still held
        check(lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        cap = 0
        while lib.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0 or ctypes.get_errno() == errno.EPERM:
            cap += 1  # EPERM: no CAP_SETPCAP (not in a user namespace); EINVAL: past the last
            if cap > 63:
                break
        lib.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = bytes(24)  # two {effective, permitted, inheritable} words, all zero
        check(lib.capset(header, data), "capset")
    except OSError as exc:
        return layer(False, str(exc))
    caps = _status_field("CapEff"), _status_field("CapPrm"), _status_field("CapBnd")
    if any(value not in (None, "0000000000000000") for value in caps):
        return layer(False, f"capabilities remain (effective {caps[0]}, bounding {caps[2]})")
    detail = "no_new_privs; every capability dropped"
    return layer(True, detail + ("; real uid nobody" if nobody else ""))


def _status_field(name: str) -> str | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return line.split()[1]
    except OSError:
        pass
    return None


def _terminal() -> Layer:
    """The host starts the worker in a new session with pipes and no terminal; check it holds."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(64))
    ttys = [fd for fd in fds if _isatty(fd)]
    if ttys:
        return layer(False, f"file descriptors {ttys} reach a terminal")
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return layer(True, "no controlling terminal and no descriptor that reaches one")
    return layer(False, "/dev/tty can be opened")


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False

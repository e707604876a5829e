"""seccomp (Linux): the system calls the worker may not make, as a classic BPF filter.

No sockets but IP (no Unix-socket connections to host services), no TIOCSTI or TIOCLINUX, no
set*id, memfd or SysV shared memory, no io_uring, ptrace, process_vm, keyrings, bpf, perf events,
userfaultfd, mount or new namespaces; other system-call ABIs (32-bit, x32) kill the process.
The numbers are per architecture (`SYSCALLS`); an architecture without a table gets no filter,
and the layer says so. Standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct
from typing import NamedTuple

from rlm_cli.sandbox.worker.libc import PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, check, libc
from rlm_cli.sandbox.worker.namespaces import CLONE_NEWCGROUP, NAMESPACES
from rlm_cli.sandbox.worker.protocol import Layer, layer

SECCOMP_MODE_FILTER = 2


# The filter reads struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}.
class Numbers(NamedTuple):
    """Syscall numbers of one architecture."""

    audit_arch: int
    socket: int
    ioctl: int
    clone: int
    # ptrace, process_vm_readv/writev, keyctl, add_key, request_key, bpf, perf_event_open,
    # userfaultfd, unshare, setns, mount, umount2, pivot_root; then the set*id calls (the real
    # uid must stay what drop_real_uid made it); then memfd_create, shmget and msgget (memory
    # no process's RSS shows, so no limit or watch would see it; /dev/shm is capped instead).
    blocked: tuple[int, ...]


SYSCALLS = {
    "x86_64": Numbers(
        audit_arch=0xC000003E,
        socket=41,
        ioctl=16,
        clone=56,
        blocked=(
            *(101, 310, 311, 250, 248, 249, 321, 298, 323, 272, 308, 165, 166, 155),
            *(105, 106, 113, 114, 116, 117, 119, 122, 123),
            *(319, 29, 68),
        ),
    ),
    "aarch64": Numbers(
        audit_arch=0xC00000B7,
        socket=198,
        ioctl=29,
        clone=220,
        blocked=(
            *(117, 270, 271, 219, 217, 218, 280, 241, 282, 97, 268, 40, 39, 41),
            *(146, 144, 145, 143, 147, 149, 151, 152, 159),
            *(279, 194, 186),
        ),
    ),
}
IO_URING = (425, 426, 427)  # the same on every architecture, as is clone3
CLONE3 = 435
AF_INET, AF_INET6 = 2, 10
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
NEW_NAMESPACES = NAMESPACES | CLONE_NEWCGROUP
RET_ALLOW, RET_KILL = 0x7FFF0000, 0x80000000
LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
# (opcode, k, label if true, label if false); a bare string is a label for the next instruction.
Instruction = tuple[int, int, str | None, str | None]


def _errno(code: int) -> int:
    return 0x00050000 | code


def _filter(numbers: Numbers, x86_64: bool) -> list[Instruction | str]:
    program: list[Instruction | str] = [
        (LD, 4, None, None),
        (JEQ, numbers.audit_arch, None, "kill"),  # another ABI (int 0x80 on x86_64) is refused
        (LD, 0, None, None),
    ]
    if x86_64:
        program.append((JGE, 0x40000000, "kill", None))  # the x32 ABI
    program += [(JEQ, nr, "eperm", None) for nr in (*numbers.blocked, *IO_URING)]
    program += [
        (JEQ, CLONE3, "enosys", None),  # libc falls back to clone(), whose flags we can see
        (JEQ, numbers.socket, "socket", None),
        (JEQ, numbers.ioctl, "ioctl", None),
        (JEQ, numbers.clone, "clone", None),
        (RET, RET_ALLOW, None, None),
        "socket",
        (LD, 16, None, None),  # args[0], the address family
        (JEQ, AF_INET, "allow", None),
        (JEQ, AF_INET6, "allow", "eperm"),
        "ioctl",
        (LD, 24, None, None),  # args[1], the request
        (JEQ, TIOCSTI, "eperm", None),
        (JEQ, TIOCLINUX, "eperm", "allow"),
        "clone",
        (LD, 16, None, None),  # args[0], the flags
        (JSET, NEW_NAMESPACES, "eperm", "allow"),
        "allow",
        (RET, RET_ALLOW, None, None),
        "eperm",
        (RET, _errno(errno.EPERM), None, None),
        "enosys",
        (RET, _errno(errno.ENOSYS), None, None),
        "kill",
        (RET, RET_KILL, None, None),
    ]
    return program


def apply() -> Layer:
    machine = platform.machine()
    if machine not in SYSCALLS:
        return layer(False, f"no filter for the {machine} architecture")
    code = _assemble(_filter(SYSCALLS[machine], machine == "x86_64"))
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HxxxxxxP", len(code) // 8, ctypes.addressof(buffer))
    lib = libc()
    try:
        check(lib.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        check(lib.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0), "seccomp")
    except OSError as exc:
        return layer(False, f"the filter was refused ({exc})")
    return layer(
        True, "no Unix or raw sockets, TIOCSTI, io_uring, ptrace, keyrings, bpf, set*id, memfd"
    )


def _assemble(program: list[Instruction | str]) -> bytes:
    labels: dict[str, int] = {}
    index = 0
    for item in program:
        if isinstance(item, str):
            labels[item] = index
        else:
            index += 1
    out = []
    index = 0
    for item in program:
        if isinstance(item, str):
            continue
        opcode, k, if_true, if_false = item
        jt = labels[if_true] - index - 1 if if_true else 0
        jf = labels[if_false] - index - 1 if if_false else 0
        out.append(struct.pack("HBBI", opcode, jt, jf, k))
        index += 1
    return b"".join(out)

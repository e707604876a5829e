"""Landlock (Linux 5.13+): which files the worker may read and write, and (ABI 4+) no TCP bind
or connect, (ABI 6+) no signals to, or abstract sockets of, processes outside the sandbox.

The worker may read the inputs, the Python installation, system libraries and its own /proc
entries, and read and write only its temporary directory and /dev/shm (both private tmpfs,
`namespaces.PRIVATE`). Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
import sys
import sysconfig
from typing import Any

from rlm_cli.sandbox.worker.libc import PR_SET_NO_NEW_PRIVS, check, libc
from rlm_cli.sandbox.worker.namespaces import PRIVATE
from rlm_cli.sandbox.worker.protocol import Layer, layer

# Landlock (linux/landlock.h). The syscall numbers are the same on every architecture.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_TRUNCATE, FS_IOCTL_DEV = 1 << 14, 1 << 15
# Rights the kernel knows, by ABI: 1 had bits 0-12, 2 added REFER, 3 TRUNCATE, 5 IOCTL_DEV.
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
FS_ALL_LATEST = (1 << 16) - 1
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
NET_BIND_TCP, NET_CONNECT_TCP = 1, 2
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1, 2

# Read-only system paths: shared libraries, the loader cache, time zones, programs a cell may
# run (grep, sort). Nothing here is the user's.
SYSTEM_READ = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/alternatives",
)
PROC_READ = (
    *("/proc/self", "/proc/meminfo", "/proc/cpuinfo", "/proc/stat", "/proc/loadavg"),
    *("/proc/uptime", "/proc/version", "/proc/filesystems"),
)
DEVICES = {"/dev/null": FS_READ_FILE | FS_WRITE_FILE, "/dev/zero": FS_READ_FILE}
DEVICES.update({"/dev/urandom": FS_READ_FILE, "/dev/random": FS_READ_FILE})


def apply(policy: dict[str, Any], readable: list[str]) -> Layer:
    syscall = libc().syscall
    syscall.restype = ctypes.c_long
    abi = syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 0:
        return layer(False, f"Landlock is not available ({os.strerror(ctypes.get_errno())})")
    fs = FS_BY_ABI.get(abi, FS_ALL_LATEST)
    attr = struct.pack(
        "QQQ",
        fs,
        NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0,
    )
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = syscall(SYS_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return layer(False, f"Landlock ruleset refused ({os.strerror(ctypes.get_errno())})")
    read = FS_READ_FILE | FS_READ_DIR | FS_EXECUTE
    rules: dict[str, int] = {}
    for path in (*python_paths(), *SYSTEM_READ):
        rules[path] = read
    if "/proc" in PRIVATE:  # the host's /proc would show its processes
        # Its own entries and the machine's figures; not the rest (kpageflags, slabinfo and
        # the like, which root's uid could otherwise read).
        for path in PROC_READ:
            rules[path] = FS_READ_FILE | FS_READ_DIR
    rules.update(DEVICES)
    for path in readable:
        rules[path] = rules.get(path, 0) | FS_READ_FILE
    rules[policy["tmp_dir"]] = fs & ~FS_IOCTL_DEV
    if "/dev/shm" in PRIVATE:
        rules["/dev/shm"] = fs & ~FS_IOCTL_DEV
    try:
        for path, rights in rules.items():
            _add_rule(syscall, ruleset, path, rights & fs)
        check(libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        check(syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "restrict_self")
    except OSError as exc:
        return layer(False, f"Landlock could not be applied ({exc})")
    finally:
        os.close(ruleset)
    net = "; no TCP bind or connect" if abi >= 4 else "; TCP not covered (ABI < 4)"
    scope = "; no signals or abstract sockets outside" if abi >= 6 else ""
    return layer(True, f"ABI {abi}: read inputs and Python only, write the temp dir{net}{scope}")


def python_paths() -> list[str]:
    """The Python installation, narrowly: the standard library, site-packages and the lib folder
    above the standard library (libpython), not the whole prefix (which may be a home folder),
    and the interpreter itself (cells may start it)."""
    paths = {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {os.path.dirname(sysconfig.get_path("stdlib")), os.path.realpath(sys.executable)}
    venv = os.path.join(sys.prefix, "pyvenv.cfg")  # a venv's Python reads it as it starts
    if os.path.exists(venv):
        paths.add(venv)
    return sorted(path for path in paths if path and path != "/")


def _add_rule(syscall: Any, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this system (/lib32), or an input gone missing: loading will say so
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        attr = struct.pack("=Qi", rights, fd)  # struct landlock_path_beneath_attr, packed
        check(syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, attr, ctypes.c_uint32(0)), path)
    finally:
        os.close(fd)

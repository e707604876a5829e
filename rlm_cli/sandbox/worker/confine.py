"""Confinement of the worker (Linux): namespaces, Landlock, seccomp, capabilities and limits.

Model-written code runs in this process, and the model reads the user's inputs, so a cell is
treated as an attack. Two steps, both run before any cell:

`isolate(policy)`, first thing at start-up while the process is still single-threaded:
  - new user, PID, mount, IPC, UTS and network namespaces (one `unshare`). The host-visible
    process (the "launcher") then forks PID 1 of the new PID namespace, and PID 1 forks the
    worker proper. Only the worker runs cells; the launcher and PID 1 run nothing but this file.
    When the worker exits, PID 1 exits, and the kernel kills every process left in the namespace;
    the launcher dies with the host and PID 1 with the launcher (parent-death signals), with the
    same effect. Cells see no host process, and only a loopback interface that is down.
  - in the mount namespace, PID 1 mounts a private /proc, remounts every host mount read-only,
    and mounts size-capped tmpfs on the worker's temporary directory (its cwd, HOME and TMPDIR)
    and on /dev/shm, which only the worker sees.

`restrict(policy, readable)`, once the `init` frame has named the inputs:
  - rlimits: address space, CPU seconds, processes, file size, open files, no core dumps;
  - as root, the real uid becomes `nobody` (see REAL_UID); no_new_privs, then every capability
    dropped (bounding set, ambient, effective, permitted);
  - Landlock: read the inputs, the Python installation, system libraries and the worker's own
    /proc entries; read and write only the temporary directory and /dev/shm; no TCP bind or
    connect; no signals to, and no abstract sockets of, processes outside the sandbox;
  - seccomp: no sockets but IP (no Unix-socket connections to host services), no TIOCSTI, no
    set*id, memfd or SysV shared memory, no io_uring, ptrace, keyrings, bpf, perf events, mount
    or new namespaces; other system-call ABIs kill the process.

Each step reports one `Layer` per name in LAYERS: active, or not and why. Standard library only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import signal
import stat
import struct
import sys
import sysconfig
from typing import Any, NamedTuple

from rlm_cli.sandbox.worker.protocol import LAYERS, Layer

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18

PR_SET_PDEATHSIG = 1
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

_libc: Any = None


def _c() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


# Policy.skip: layers left out on purpose, to see how a run behaves on a system without them.
SKIPPED = "left out on purpose (RLM_SANDBOX_SKIP)"


def layer(active: bool, detail: str) -> Layer:
    return {"active": active, "detail": detail}


def off(why: str) -> dict[str, Layer]:
    return {name: layer(False, why) for name in LAYERS}


# ----- step 1: namespaces -----


def isolate(policy: dict[str, Any]) -> dict[str, Layer]:
    """Enter new namespaces; returns (in the worker proper only) the namespaces layer report."""
    if not sys.platform.startswith("linux"):
        return {"namespaces": layer(False, f"not available on {sys.platform}")}
    if "namespaces" in policy.get("skip", ()):
        return {"namespaces": layer(False, SKIPPED)}
    # The launcher dies with the host, however the host ends (SIGKILL, a closed terminal), and
    # PID 1 dies with the launcher: nothing in the namespace outlives the host, even when a
    # cell has stopped the worker from exiting at the end of its input.
    host = os.getppid()
    _c().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != host:
        os._exit(1)
    try:
        _enter_namespaces()
    except OSError as exc:
        return {"namespaces": layer(False, f"cannot create namespaces ({exc})")}
    alive, held = os.pipe()  # the launcher holds `held` open until it exits
    pid1 = os.fork()
    if pid1:
        os.close(alive)
        _supervise(pid1)  # the launcher: never returns
    os.close(held)
    _c().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.set_blocking(alive, False)
    try:
        if os.read(alive, 1) == b"":  # end of file: the launcher died before the signal was armed
            os._exit(1)
    except BlockingIOError:
        pass
    os.close(alive)
    try:  # PID 1 must never go on to run cells, whatever fails here
        notes = _mount_private(policy["tmp_dir"], int(policy["tmp_bytes"]))
        worker = os.fork()
    except BaseException:
        os._exit(1)
    if worker:
        _supervise(worker)  # PID 1: never returns
    os.chdir(policy["tmp_dir"])  # into the tmpfs mounted over the directory
    detail = "user, pid, mount, ipc, uts, net; no host processes, loopback down"
    return {"namespaces": layer(True, "; ".join([detail, *notes]))}


# Inside uid that the worker takes as its real uid, mapped to an unprivileged host uid. The kernel
# does not apply RLIMIT_NPROC to a task whose real uid is host root, so a worker started by root
# keeps root only as its effective uid (for reading the Python installation, which may be in
# /root) and counts its processes as `nobody`'s (`drop_real_uid`; seccomp then forbids changing).
REAL_UID = 1
NOBODY = 65534
mapped_nobody = False


def _enter_namespaces() -> None:
    """unshare, then map the caller's own uid and gid to 0 inside. As root, a helper left in the
    host's namespace also maps REAL_UID to `nobody` (only a process with CAP_SETUID in the parent
    namespace may write a map of more than the caller's own id)."""
    global mapped_nobody
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        _check(_c().unshare(NAMESPACES), "unshare")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
        return
    launcher = os.getpid()
    go_read, go_write = os.pipe()
    helper = os.fork()
    if helper == 0:
        code = 1
        try:
            os.close(go_write)
            if os.read(go_read, 1) == b"x":
                _write(f"/proc/{launcher}/uid_map", f"0 0 1\n{REAL_UID} {NOBODY} 1\n")
                _write(f"/proc/{launcher}/gid_map", f"0 0 1\n{REAL_UID} {NOBODY} 1\n")
                code = 0
        finally:
            os._exit(code)
    os.close(go_read)
    try:
        _check(_c().unshare(NAMESPACES), "unshare")
    finally:
        os.write(go_write, b"x")  # after a failed unshare, the maps fail too: harmless
        os.close(go_write)
        _, status = os.waitpid(helper, 0)
    if status != 0:
        _write("/proc/self/uid_map", "0 0 1")
        _write("/proc/self/gid_map", "0 0 1")
    mapped_nobody = status == 0


def drop_real_uid() -> bool:
    """The worker's real uid becomes `nobody` on the host (see REAL_UID), so RLIMIT_NPROC holds."""
    if not mapped_nobody:
        return False
    os.setresgid(REAL_UID, 0, 0)
    os.setresuid(REAL_UID, 0, 0)
    return True


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _supervise(child: int) -> None:
    """The launcher and PID 1: hold no protocol pipe, ignore the host's SIGINT (meant for the
    cell), reap, and exit with the worker's status. PID 1's exit ends the whole namespace."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)
    except BaseException:
        os._exit(code)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            break
    os._exit(code if code >= 0 else 128 - code)


def _mount_private(tmp_dir: str, tmp_bytes: int) -> list[str]:
    """In the new mount namespace: a private /proc, every mount of the host read-only (Landlock
    does not cover chmod, chown, utime or xattrs; a read-only mount does), then the tmpfs."""
    notes = []
    libc = _c()
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    if libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) < 0:
        notes.append(f"no private /proc ({os.strerror(ctypes.get_errno())}); /proc is denied")
    else:
        PRIVATE.add("/proc")
    mounts, failed = _read_only_mounts()
    notes.append(f"{mounts - failed} of {mounts} host mounts read-only")
    options = f"size={tmp_bytes},nr_inodes=65536,mode=700".encode()
    if libc.mount(b"tmpfs", os.fsencode(tmp_dir), b"tmpfs", MS_NOSUID | MS_NODEV, options) < 0:
        notes.append(f"no private tmpfs ({os.strerror(ctypes.get_errno())})")
    # multiprocessing's locks and shared_memory live in /dev/shm: a small private one.
    options = f"size={min(tmp_bytes, SHM_BYTES)},nr_inodes=4096,mode=1777".encode()
    if libc.mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) < 0:
        notes.append(f"no private /dev/shm ({os.strerror(ctypes.get_errno())})")
    else:
        PRIVATE.add("/dev/shm")
    return notes


# Per-mount options in /proc/self/mountinfo, and their flags. A remount must repeat the flags a
# mount was locked with by the namespace that made it, or the kernel refuses it.
MOUNT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": 1024,
    "nodiratime": 2048,
    "relatime": 1 << 21,
}
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
SHM_BYTES = 256 * 1024 * 1024


def _read_only_mounts() -> tuple[int, int]:
    """Remount every mount of this namespace read-only; returns (mounts, failures). A mount hidden
    under another cannot be named by its path and fails, but nothing can reach it either."""
    libc = _c()
    with open("/proc/self/mountinfo", "rb") as info:
        lines = info.read().splitlines()
    failed = 0
    for line in lines:
        fields = line.split(b" ")
        point = _unescape(fields[4])
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in fields[5].split(b","):
            flags |= MOUNT_FLAGS.get(option.decode(), 0)
        if libc.mount(None, point, None, flags, None) < 0:
            failed += 1
    return len(lines), failed


def _unescape(path: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash in a path as a backslash and 3 octal
    digits."""
    if b"\\" not in path:
        return path
    out, index = bytearray(), 0
    while index < len(path):
        if path[index : index + 1] == b"\\" and path[index + 1 : index + 4].isdigit():
            out.append(int(path[index + 1 : index + 4], 8))
            index += 4
        else:
            out += path[index : index + 1]
            index += 1
    return bytes(out)


# What PID 1 mounted privately; the worker, forked after, inherits the record. Nothing of the
# host's (/proc, /dev/shm) is ever granted to Landlock in their place.
PRIVATE: set[str] = set()


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
        "landlock": lambda: _landlock(policy, readable),
        "seccomp": _seccomp,
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
    libc = _c()
    try:
        nobody = drop_real_uid()  # while CAP_SETUID is still held
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        cap = 0
        while libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0 or ctypes.get_errno() == errno.EPERM:
            cap += 1  # EPERM: no CAP_SETPCAP (not in a user namespace); EINVAL: past the last
            if cap > 63:
                break
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
        data = bytes(24)  # two {effective, permitted, inheritable} words, all zero
        _check(libc.capset(header, data), "capset")
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


def _landlock(policy: dict[str, Any], readable: list[str]) -> Layer:
    syscall = _c().syscall
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
        _check(_c().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)), "restrict_self")
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
        _check(syscall(SYS_LANDLOCK_ADD_RULE, ruleset, 1, attr, ctypes.c_uint32(0)), path)
    finally:
        os.close(fd)


# seccomp: a classic BPF program over struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}.
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


def _seccomp() -> Layer:
    machine = platform.machine()
    if machine not in SYSCALLS:
        return layer(False, f"no filter for the {machine} architecture")
    code = _assemble(_filter(SYSCALLS[machine], machine == "x86_64"))
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("HxxxxxxP", len(code) // 8, ctypes.addressof(buffer))
    libc = _c()
    try:
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0), "seccomp")
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

"""Step 1 of the confinement (Linux): new namespaces, a PID 1 of their own, private mounts.

First thing at start-up, while the process is still single-threaded:
  - new user, PID, mount, IPC, UTS and network namespaces (one `unshare`). The host-visible
    process (the "launcher") then forks PID 1 of the new PID namespace, and PID 1 forks the
    worker proper. Only the worker runs cells; the launcher and PID 1 run nothing but this file.
    When the worker exits, PID 1 exits, and the kernel kills every process left in the namespace;
    the launcher dies with the host and PID 1 with the launcher (parent-death signals), with the
    same effect. Cells see no host process, and only a loopback interface that is down.
  - in the mount namespace, PID 1 mounts a private /proc, remounts every host mount read-only,
    and mounts size-capped tmpfs on the worker's temporary directory (its cwd, HOME and TMPDIR)
    and on /dev/shm, which only the worker sees (`PRIVATE` records which; `landlock` reads it).
  - as root, the uid maps also give the worker a real uid of `nobody` (`REAL_UID`), which
    `drop_real_uid` takes in step 2.

Standard library only.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Any

from rlm_cli.sandbox.worker.libc import PR_SET_PDEATHSIG, check, libc
from rlm_cli.sandbox.worker.protocol import Layer, layer

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP = 0x02000000
NAMESPACES = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18


def isolate(policy: dict[str, Any]) -> Layer:
    """Enter new namespaces under a launcher and a PID 1 (see the module docstring); returns, in
    the worker proper only (the other two never return), the namespaces layer report. Linux."""
    # The launcher dies with the host, however the host ends (SIGKILL, a closed terminal), and
    # PID 1 dies with the launcher: nothing in the namespace outlives the host, even when a
    # cell has stopped the worker from exiting at the end of its input.
    host = os.getppid()
    libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != host:
        os._exit(1)
    try:
        _enter_namespaces()
    except OSError as exc:
        return layer(False, f"cannot create namespaces ({exc})")
    alive, held = os.pipe()  # the launcher holds `held` open until it exits
    pid1 = os.fork()
    if pid1:
        os.close(alive)
        _supervise(pid1)  # the launcher: never returns
    os.close(held)
    libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
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
    return layer(True, "; ".join([detail, *notes]))


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
        check(libc().unshare(NAMESPACES), "unshare")
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
        check(libc().unshare(NAMESPACES), "unshare")
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
    lib = libc()
    check(lib.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    if lib.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) < 0:
        notes.append(f"no private /proc ({os.strerror(ctypes.get_errno())}); /proc is denied")
    else:
        PRIVATE.add("/proc")
    mounts, failed = _read_only_mounts()
    notes.append(f"{mounts - failed} of {mounts} host mounts read-only")
    options = f"size={tmp_bytes},nr_inodes=65536,mode=700".encode()
    if lib.mount(b"tmpfs", os.fsencode(tmp_dir), b"tmpfs", MS_NOSUID | MS_NODEV, options) < 0:
        notes.append(f"no private tmpfs ({os.strerror(ctypes.get_errno())})")
    # multiprocessing's locks and shared_memory live in /dev/shm: a small private one.
    options = f"size={min(tmp_bytes, SHM_BYTES)},nr_inodes=4096,mode=1777".encode()
    if lib.mount(b"tmpfs", b"/dev/shm", b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) < 0:
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
    lib = libc()
    with open("/proc/self/mountinfo", "rb") as info:
        lines = info.read().splitlines()
    failed = 0
    for line in lines:
        fields = line.split(b" ")
        point = _unescape(fields[4])
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in fields[5].split(b","):
            flags |= MOUNT_FLAGS.get(option.decode(), 0)
        if lib.mount(None, point, None, flags, None) < 0:
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

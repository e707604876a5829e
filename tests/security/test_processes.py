"""Hostile cells against the host process and the process table: signals, rlimits, ptrace,
process_vm_readv, and processes meant to outlive the run.

Evidence: the host's /proc entry sampled from this test process while the run goes (state,
TracerPid, limits), its exit code, secrets scanned for as everywhere, and the real process table
(processes carrying the cell's mark in argv, environment or name) once the run is over.
"""

from __future__ import annotations

import pytest

from security.hostile import ENV_SECRETS, Arena

KILL_HOST = r"""
# Only this run's host (found by its script path in the cmdline), never anything else.
for pid in host_pids():
    attempt('SIGKILL host %d' % pid, os.kill, pid, signal.SIGKILL)
    if os.getpgid(pid) == pid:  # its own group only (the test starts it as a session leader)
        attempt('killpg host group', os.killpg, pid, signal.SIGKILL)
    attempt('pidfd_send_signal', lambda: signal.pidfd_send_signal(os.pidfd_open(pid), signal.SIGKILL))
"""


@pytest.mark.slow
def test_host_cannot_be_killed(arena: Arena) -> None:
    """os.kill / killpg / pidfd_send_signal(SIGKILL) on getppid() and on the rlm process found
    by scanning /proc -> the host lives on: exit 0 with the scripted answer."""
    outcome = arena.run("kill", KILL_HOST)
    arena.assert_contained(outcome)


STOP_HOST = r"""
stopped = []
for pid in host_pids():
    if attempt('SIGSTOP host %d' % pid, os.kill, pid, signal.SIGSTOP) is None:
        stopped.append(pid)
time.sleep(1.5)
for pid in stopped:  # so that an unsandboxed run does not hang the test
    attempt('SIGCONT', os.kill, pid, signal.SIGCONT)
"""


@pytest.mark.slow
def test_host_cannot_be_stopped(arena: Arena) -> None:
    """SIGSTOP the host for 1.5 s -> the host's state, sampled every 20 ms, is never T."""
    outcome = arena.run("stop", STOP_HOST)
    outcome.assert_answered()
    assert not outcome.watch.host_states & {"T", "t"}, (
        f"the host was stopped: states {outcome.watch.host_states}\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


PRLIMIT_HOST = r"""
import resource, subprocess
for pid in host_pids():
    attempt('prlimit NOFILE', resource.prlimit, pid, resource.RLIMIT_NOFILE, (37, 37))
    attempt('prlimit MSGQUEUE', resource.prlimit, pid, resource.RLIMIT_MSGQUEUE, (7777, 7777))
    attempt('prlimit(1)', subprocess.run, ['prlimit', '--pid', str(pid), '--core=4242:4242'], timeout=5)
time.sleep(1)
"""


@pytest.mark.slow
def test_host_rlimits_cannot_be_changed(arena: Arena) -> None:
    """resource.prlimit(host, NOFILE/MSGQUEUE) and `prlimit --pid` -> the host's
    /proc/<pid>/limits, sampled throughout, never shows the cell's odd values."""
    outcome = arena.run("prlimit", PRLIMIT_HOST)
    outcome.assert_answered()
    seen = "\n".join(outcome.watch.host_limits)
    odd = [
        value
        for value in (
            "37                   37",
            "7777                 7777",
            "4242                 4242",
        )
        if value in seen
    ]
    assert not odd, f"the host's limits were changed: {odd}\n{outcome.explain()}"
    arena.assert_contained(outcome)


PTRACE_HOST = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
def attach(pid):
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    try:
        os.waitpid(pid, 0x40000000)  # __WALL
        stat = read('/proc/%d/stat' % pid).rsplit(b')', 1)[1].split()
        start, end = int(stat[47]), int(stat[48])  # env_start, env_end
        words = []
        for addr in range(start, min(end, start + 8192), 8):
            words.append(ctypes.c_long(libc.ptrace(2, pid, ctypes.c_void_p(addr), None)).value.to_bytes(8, 'little', signed=True))  # PEEKDATA
        grab('ptrace peek env', b''.join(words))
        time.sleep(1)
    finally:
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
for pid in host_pids():
    attempt('PTRACE_ATTACH %d' % pid, attach, pid)
    attempt('PTRACE_SEIZE %d' % pid, lambda: libc.ptrace(0x4206, pid, None, None) == 0 and libc.ptrace(17, pid, None, None))
exfiltrate()
"""


@pytest.mark.slow
def test_host_cannot_be_ptraced(arena: Arena) -> None:
    """PTRACE_ATTACH (then PEEKDATA of its environment) and PTRACE_SEIZE on the host -> its
    TracerPid, sampled throughout, stays 0, and no env secret shows up anywhere."""
    outcome = arena.run("ptrace", PTRACE_HOST)
    outcome.assert_answered()
    assert outcome.watch.tracer_pids <= {"0"}, (
        f"the host was traced: TracerPid {outcome.watch.tracer_pids}\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


VM_READ_HOST = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
class iovec(ctypes.Structure):
    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]
libc.process_vm_readv.restype = ctypes.c_ssize_t
def vm_read(pid):
    stat = read('/proc/%d/stat' % pid).rsplit(b')', 1)[1].split()
    start, end = int(stat[47]), int(stat[48])
    size = end - start
    buf = ctypes.create_string_buffer(size)
    local, remote = iovec(ctypes.cast(buf, ctypes.c_void_p), size), iovec(start, size)
    got = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if got < 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
    return buf.raw[:got]
for pid in host_pids():
    grab('process_vm_readv env', attempt('process_vm_readv %d' % pid, vm_read, pid))
exfiltrate()
"""


@pytest.mark.slow
def test_host_memory_cannot_be_read_with_process_vm_readv(arena: Arena) -> None:
    """process_vm_readv of the host's environment block -> no env secret anywhere."""
    outcome = arena.run("vmread", VM_READ_HOST)
    outcome.assert_answered()
    arena.assert_no_leak(outcome, names=list(ENV_SECRETS))
    arena.assert_contained(outcome)


DAEMONS = r"""
import subprocess
M = T['mark']
env = dict(os.environ, RLMSEC_MARK=M)
sleeper = 'import time; time.sleep(1000)'
def double_fork():
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                os.execve(sys.executable, [sys.executable, '-c', sleeper, M, 'double-fork'], env)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return 'forked'
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
attempt('double fork + setsid', double_fork)
attempt('Popen new session', lambda: subprocess.Popen([sys.executable, '-c', sleeper, M, 'new-session'], start_new_session=True, **quiet).pid)
attempt('Popen new process group', lambda: subprocess.Popen([sys.executable, '-c', sleeper, M, 'new-group'], process_group=0, **quiet).pid)
attempt('nohup', lambda: subprocess.Popen(['nohup', sys.executable, '-c', sleeper, M, 'nohup'], **quiet).pid)
attempt('sh background', lambda: subprocess.run(['sh', '-c', 'RLMSEC_MARK=%s sleep 1000 >/dev/null 2>&1 &' % M], timeout=5))
attempt('plain child', lambda: subprocess.Popen([sys.executable, '-c', sleeper, M, 'plain'], **quiet).pid)
attempt('posix_spawn', os.posix_spawn, sys.executable, [sys.executable, '-c', sleeper, M, 'spawn'], env)
time.sleep(0.5)
"""


@pytest.mark.slow
def test_daemons_do_not_outlive_the_run(arena: Arena) -> None:
    """A double-fork+setsid daemon, Popen(start_new_session=True), a new process group, nohup,
    `sh -c 'sleep &'`, a plain child, posix_spawn, each sleeping 1000 s -> the run ends within
    30 s and none of them (found by the mark in argv/environ) is alive after it."""
    outcome = arena.run("daemons", DAEMONS, timeout=90)
    outcome.assert_answered(within=30)
    arena.assert_no_leftovers(outcome)
    arena.assert_contained(outcome)


FD_HOLDER = r"""
import subprocess
M = T['mark']
fds = sorted(int(fd) for fd in os.listdir('/proc/self/fd'))
note('fds', [(fd, attempt('readlink', os.readlink, '/proc/self/fd/%d' % fd)) for fd in fds])
keep = [fd for fd in fds if fd > 2]
for fd in keep:
    try:
        os.set_inheritable(fd, True)
    except OSError:
        pass
attempt('fd holder', lambda: subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)', M, 'fd-holder'],
        pass_fds=keep, start_new_session=True, env=dict(os.environ, RLMSEC_MARK=M)).pid)
def fork_holder():
    if os.fork() == 0:
        os.setsid()
        try:
            os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(1000)', M, 'fork-holder'])
        finally:
            os._exit(0)
attempt('forked holder keeps every fd', fork_holder)
"""


@pytest.mark.slow
def test_a_child_holding_the_workers_fds_does_not_hold_up_the_host(arena: Arena) -> None:
    """Daemons that inherit every fd of the worker (the protocol pipes among them) and sleep
    -> the host does not wait on those pipes: the run ends within 30 s, and the daemons are
    gone after it."""
    outcome = arena.run("fds", FD_HOLDER, timeout=90)
    outcome.assert_answered(within=30)
    arena.assert_no_leftovers(outcome)
    arena.assert_contained(outcome)

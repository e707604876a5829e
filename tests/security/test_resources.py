"""Hostile cells that exhaust resources: memory, disk, processes and threads, CPU.

Each attack stops by itself before it can hurt this machine when the sandbox fails (memory and
disk guards, a cap of 2,000 processes that also exit after 20 s), so that running the suite
with `--sandbox none` is safe. Evidence is sampled from outside while the run goes: the RSS and
thread count of the processes the cell named with its mark (prctl PR_SET_NAME), free disk and
memory, the limits in /proc/<pid>/limits.
"""

from __future__ import annotations

import pytest

from security.hostile import Arena, GiB

NAME_ME = r"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def name_me():
    libc.prctl(15, T['mark'].encode(), 0, 0, 0)  # PR_SET_NAME: the test finds this process by it
def available():
    for line in open('/proc/meminfo'):
        if line.startswith('MemAvailable:'):
            return int(line.split()[1]) * 1024
    return 0
"""

ALLOCATE = (
    NAME_ME
    + r"""
name_me()
GiB = 1 << 30
if available() > 12 * GiB:
    try:
        block = bytearray(8 * GiB)
        note('ATTACK-OK allocated 8 GiB at once')
        del block
    except MemoryError:
        note('MemoryError for 8 GiB at once')
chunks = []
try:
    while len(chunks) < 32 and available() > 4 * GiB:
        chunks.append(bytearray(256 << 20))
    note('allocated', len(chunks) * 256, 'MiB in chunks')
except MemoryError:
    note('MemoryError after', len(chunks) * 256, 'MiB')
del chunks
"""
)


@pytest.mark.slow
def test_eight_gigabytes_cannot_be_allocated(arena: Arena) -> None:
    """bytearray(8 GiB), then 256 MiB chunks up to 8 GiB -> the worker's RSS, sampled from
    outside, never passes 3 GiB (the address-space limit is about 2 GiB); the host answers."""
    outcome = arena.run("memory", ALLOCATE, timeout=120)
    outcome.assert_answered()
    rss = outcome.watch.marked_rss_max
    assert rss < 3 * GiB, f"the worker reached {rss / GiB:.1f} GiB of RSS\n{outcome.explain()}"
    arena.assert_contained(outcome)


FILL_DISK = r"""
import shutil
GiB = 1 << 30
chunk = b'\0' * (64 << 20)
def fill(path, limit=5 * GiB):
    written = 0
    with open(path, 'wb') as f:
        while written < limit:
            if shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < 20 * GiB:
                note('stopping: the disk is nearly full')
                break
            f.write(chunk)
            f.flush()
            written += len(chunk)
    return written
written = attempt('fill cwd', fill, 'fill-' + T['mark']) or 0
note('wrote', written >> 20, 'MiB in cwd')
if written < GiB:
    note('wrote', (attempt('fill /tmp', fill, '/tmp/rlm-sec-fill-' + T['mark']) or 0) >> 20, 'MiB in /tmp')
# A file-size limit bounds one file, not a filesystem: many files each under it (a tmpfs /tmp
# is memory the address-space limit does not count).
total = 0
for n in range(80):
    if total >= 5 * GiB:
        break
    got = attempt('small file %d' % n, fill, 'many-%s-%d' % (T['mark'], n), 64 << 20)
    if not got:
        break
    total += got
note('wrote', total >> 20, 'MiB in many files')
"""


@pytest.mark.slow
def test_the_disk_cannot_be_filled(arena: Arena) -> None:
    """Write a 5 GiB file in the cwd (then /tmp), then 5 GiB as 64 MiB files -> stopped by a
    limit: the real disk's used space and the machine's available memory (a tmpfs is memory)
    never move by 1.5 GiB."""
    outcome = arena.run("disk", FILL_DISK, timeout=180)
    outcome.assert_answered()
    watch = outcome.watch
    grown = watch.disk_used_max - watch.disk_used_before
    assert grown < 1.5 * GiB, f"the disk grew by {grown / GiB:.1f} GiB\n{outcome.explain()}"
    eaten = watch.mem_available_before - watch.mem_available_min
    assert eaten < 1.5 * GiB, (
        f"available memory fell by {eaten / GiB:.1f} GiB (tmpfs?)\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


FORK_BOMB = (
    NAME_ME
    + r"""
import threading
name_me()  # children and threads inherit the name
children = []
try:
    for _ in range(2000):
        pid = os.fork()
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        children.append(pid)
except OSError as exc:
    note('fork stopped at', len(children), exc)
note('forked', len(children))
time.sleep(1)
for pid in children:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except OSError:
        pass
release = threading.Event()
threads = []
try:
    for _ in range(2000):
        t = threading.Thread(target=release.wait, daemon=True)
        t.start()
        threads.append(t)
except (RuntimeError, OSError) as exc:
    note('threads stopped at', len(threads), exc)
note('threads', len(threads))
time.sleep(1)
release.set()
"""
)


@pytest.mark.slow
def test_fork_and_thread_bombs_are_bounded(arena: Arena) -> None:
    """Fork up to 2,000 children, then start up to 2,000 threads -> at no sampled moment do
    more than 300 processes, or 300 threads, carry the cell's name; the host answers."""
    outcome = arena.run("forkbomb", FORK_BOMB, timeout=120)
    outcome.assert_answered()
    watch = outcome.watch
    assert watch.marked_max <= 300, (
        f"{watch.marked_max} processes of the cell were alive at once\n{outcome.explain()}"
    )
    assert watch.marked_threads_max <= 300, (
        f"{watch.marked_threads_max} threads of the cell were alive at once\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


CPU_SPIN = r"""
import subprocess
M = T['mark']
spin = subprocess.Popen([sys.executable, '-c', 'while True: pass', M, 'spin'], start_new_session=True,
                        env=dict(os.environ, RLMSEC_MARK=M), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
note('spinning child', spin.pid)
time.sleep(1.5)
"""


@pytest.mark.slow
def test_a_cpu_spinning_child_is_limited_and_reaped(arena: Arena) -> None:
    """A detached child spinning the CPU forever -> its /proc/<pid>/limits (read from outside)
    carry a finite CPU-seconds limit, and it is not alive once the run is over."""
    outcome = arena.run("spin", CPU_SPIN)
    outcome.assert_answered()
    limits = outcome.watch.marked_cpu_limits
    assert limits and "unlimited" not in limits, (
        f"the spinning child's CPU limit: {limits or 'never seen'}\n{outcome.explain()}"
    )
    arena.assert_no_leftovers(outcome)
    arena.assert_contained(outcome)

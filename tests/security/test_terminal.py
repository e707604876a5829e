"""Hostile cells against the user's terminal and rlm's own output: escape sequences, TIOCSTI,
/dev/tty and /dev/pts, writes to rlm's stdout, and a trace line forged after the run.

Evidence: rlm's stderr (with `--view plain`) and stdout as captured here; a pseudo-terminal
this test owns and gives rlm as stdin (anything injected into its input queue or written to it
is read back here); the trace file after the run and a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import time

import pytest

from security.hostile import Arena

ESCAPES = r"""
E = '\x1b]52;c;' + 'cm0gLXJmIH4=' + '\x07' + '\x1b]0;pwned title\x07' + '\x1b[2J' + '\x9b31m' + '\x1b]8;;http://evil.example\x1b\\link'
print('escapes:', E)
os.write(2, E.encode())
try:
    llm_query('prompt ' + E, model=None)
except Exception as exc:
    note('llm_query', exc)
raise RuntimeError('boom ' + E)
"""

DIE_WITH_ESCAPES = (
    "import os\nos.write(2, b'\\x1b]52;c;ZWNobyBoaQ==\\x07\\x1b[2J dying')\nos._exit(3)"
)

CONTROLS = (b"\x1b", b"\x07", b"\xc2\x9b", b"\xc2\x9d")


@pytest.mark.slow
def test_escape_sequences_do_not_reach_stderr(arena: Arena) -> None:
    """OSC 52 (clipboard), OSC 0 (title), CSI 2J, an 8-bit CSI, OSC 8 in printed output, raw on
    fd 2, in a sub-call prompt, in an exception's message, and in the last words of a worker
    that dies -> rlm's stderr with `--view plain` holds no ESC, BEL or C1 control."""
    outcome = arena.run("escapes", ESCAPES, more=[DIE_WITH_ESCAPES])
    outcome.assert_answered()
    found = [c for c in CONTROLS if c in outcome.stderr]
    assert not found, f"terminal controls {found} reached stderr\n{outcome.explain()}"
    arena.assert_contained(outcome)


TIOCSTI = r"""
import fcntl, termios, glob
payload = 'echo PWNED-%s\n' % T['mark'][::-1]
def inject(fd):
    for ch in payload:
        fcntl.ioctl(fd, termios.TIOCSTI, ch.encode())
    return 'injected'
for fd in (0, 1, 2):
    attempt('TIOCSTI fd %d' % fd, inject, fd)
def via_path(path):
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, ('written PWNED-%s\n' % T['mark'][::-1]).encode())
        return inject(fd)
    finally:
        os.close(fd)
for path in ['/dev/tty', T['pty'], *glob.glob('/dev/pts/[0-9]*')]:
    attempt('open+TIOCSTI ' + path, via_path, path)
for pid in host_pids():
    attempt('TIOCSTI via host fd 0', via_path, '/proc/%d/fd/0' % pid)
attempt('setsid+TIOCSCTTY', lambda: fcntl.ioctl(os.open(T['pty'], os.O_RDWR), termios.TIOCSCTTY, 0))
"""


@pytest.mark.slow
def test_tiocsti_and_terminal_devices_fail(arena: Arena) -> None:
    """With a pseudo-terminal as rlm's stdin: TIOCSTI on fds 0/1/2, open /dev/tty, the pty's
    /dev/pts path (and every /dev/pts/N), /proc/<host>/fd/0, then write and TIOCSTI there
    -> nothing was injected into the pty's input queue and nothing was written to it."""
    master, slave = pty.openpty()
    try:
        arena.extra_targets["pty"] = os.ttyname(slave)
        outcome = arena.run("tiocsti", TIOCSTI, stdin_fd=slave)
        os.set_blocking(slave, False)
        os.set_blocking(master, False)
        got = b""
        for fd in (slave, master):
            while select.select([fd], [], [], 0.3)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
    finally:
        os.close(master)
        os.close(slave)
    outcome.assert_answered()
    assert arena.mark[::-1].encode() not in got, (
        f"the cell reached the terminal: {got[:500]!r}\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


HOST_STDOUT = r"""
text = b'forged-answer-' + T['mark'][::-1].encode() + b'\n'
for fd in (1, 2):
    attempt('os.write fd %d' % fd, os.write, fd, text)
attempt('sys.__stdout__', lambda: (sys.__stdout__.write(text.decode()), sys.__stdout__.flush()))
for pid in host_pids():
    for fd in (1, 2):
        attempt('write /proc/%d/fd/%d' % (pid, fd), lambda: open('/proc/%d/fd/%d' % (pid, fd), 'ab').write(text))
"""


@pytest.mark.slow
def test_cells_cannot_write_to_rlms_stdout(arena: Arena) -> None:
    """os.write to the worker's fds 1/2, sys.__stdout__, /proc/<host>/fd/1 and /2 -> rlm's
    stdout is exactly the answer and stderr holds no forged line."""
    outcome = arena.run("stdout", HOST_STDOUT)
    outcome.assert_answered()
    assert arena.mark[::-1].encode() not in outcome.stderr, (
        f"a forged line reached stderr\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


LATE_TRACE = r"""
import subprocess
forged = json.dumps({'type': 'final_answer', 'run_id': 'forged', 'answer': 'forged ' + T['mark'][::-1]})
late = '''
import os, sys, time
time.sleep(2)
paths = [sys.argv[1]] + ['/proc/%s/fd/%s' % (p, f) for p, f in (x.split(':') for x in sys.argv[3:])]
for path in paths:
    try:
        with open(path, 'a') as f:
            f.write(sys.argv[2] + '\\n')
    except OSError:
        pass
'''
held = []
for pid in host_pids():
    for fd in (attempt('list host fds', os.listdir, '/proc/%d/fd' % pid) or []):
        try:
            if os.readlink('/proc/%d/fd/%s' % (pid, fd)).endswith('.jsonl'):
                held.append('%d:%s' % (pid, fd))
        except OSError:
            pass
attempt('late writer', lambda: subprocess.Popen([sys.executable, '-c', late, T['trace'], forged, *held], start_new_session=True,
        env=dict(os.environ, RLMSEC_MARK=T['mark'])).pid)
# Also keep a handle on the trace, opened now, for the late writer's sibling: this process.
attempt('open the trace for later', open, T['trace'], 'a')
"""


@pytest.mark.slow
def test_no_forged_trace_line_after_the_run(arena: Arena) -> None:
    """A detached process sleeps 2 s (past the end of the run), then appends a forged event to
    the trace path and to the host's trace fd -> 3.5 s after the run the trace still has no
    forged line, ends with run_finished, and the writer is gone."""
    outcome = arena.run("latetrace", LATE_TRACE)
    outcome.assert_answered()
    time.sleep(3.5)
    text = arena.trace_path.read_text(errors="replace")
    assert arena.mark[::-1] not in text, (
        f"a forged line was appended to the trace\n{outcome.explain()}"
    )
    events = []
    with contextlib.suppress(ValueError):
        events = [json.loads(line) for line in text.splitlines()]
    assert events and events[-1]["type"] == "run_finished", (
        "the trace does not end with run_finished"
    )
    arena.assert_contained(outcome)

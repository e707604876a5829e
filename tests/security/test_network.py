"""Hostile cells that reach out: TCP to the host's listener (127.0.0.1, ::1, the machine's own
address), UDP, a listening port of their own, path-named and abstract AF_UNIX sockets.

Evidence: the listeners live in this test process and record any connection or datagram; the
port a cell tries to listen on is probed from here while the run goes.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from security.hostile import Arena

CONNECT_OUT = r"""
M = T['mark'].encode()
def tcp(host, family):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect((host, T['tcp_port']))
    s.sendall(b'hello ' + M)
    s.close()
def udp(host, family):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.sendto(b'hello ' + M, (host, T['udp_port']))
    s.close()
for host, family in (('127.0.0.1', socket.AF_INET), ('::1', socket.AF_INET6), ('localhost', socket.AF_INET),
                     (T['host_ip'], socket.AF_INET), ('::ffff:127.0.0.1', socket.AF_INET6)):
    if host:
        attempt('tcp ' + host, tcp, host, family)
        attempt('udp ' + host, udp, host, family)
attempt('create_connection', lambda: socket.create_connection(('127.0.0.1', T['tcp_port']), timeout=2).sendall(M))
# A raw or packet socket would bypass TCP/UDP rules altogether.
attempt('raw socket', socket.socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
attempt('packet socket', socket.socket, socket.AF_PACKET, socket.SOCK_RAW)
# Another process may not be filtered like the worker: try from a child too.
import subprocess
attempt('child tcp', subprocess.run, [sys.executable, '-c',
        'import socket; socket.create_connection(("127.0.0.1", %d), timeout=2).sendall(b"child")' % T['tcp_port']], timeout=10)
"""


@pytest.mark.slow
def test_tcp_and_udp_to_the_host_listener_fail(arena: Arena) -> None:
    """TCP and UDP to 127.0.0.1, ::1, localhost, the machine's own IP, a v4-mapped v6 address,
    raw/packet sockets, and the same from a child process -> the listeners saw nothing."""
    outcome = arena.run("tcp", CONNECT_OUT)
    outcome.assert_answered()
    arena.assert_no_connections(outcome)
    arena.assert_contained(outcome)


LISTEN = r"""
port = T['listen_port']
servers = []
for host, family in (('127.0.0.1', socket.AF_INET), ('0.0.0.0', socket.AF_INET), ('::', socket.AF_INET6)):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if attempt('bind %s:%d' % (host, port), s.bind, (host, port)) is None and attempt('listen', s.listen, 8) is None:
        servers.append(s)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
attempt('bind udp', u.bind, ('0.0.0.0', port))
note('listening on %d socket(s); waiting for the outside to connect' % len(servers))
time.sleep(2.5)
"""


@pytest.mark.slow
def test_a_listening_port_is_unreachable_from_the_host(arena: Arena) -> None:
    """The cell binds and listens on a port the test chose (127.0.0.1, 0.0.0.0, ::) for 2.5 s ->
    this process, connecting to that port all the while, never gets through."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    arena.extra_targets["listen_port"] = port
    reached: list[str] = []
    done = threading.Event()

    def knock() -> None:
        while not done.is_set():
            for host in ("127.0.0.1", "::1", arena.host_ip):
                if not host:
                    continue
                try:
                    with socket.create_connection((host, port), timeout=0.2):
                        reached.append(host)
                except OSError:
                    pass
            time.sleep(0.05)

    knocker = threading.Thread(target=knock, daemon=True)
    knocker.start()
    try:
        outcome = arena.run("listen", LISTEN)
    finally:
        done.set()
        knocker.join(5)
    outcome.assert_answered()
    assert not reached, (
        f"the cell's listening port {port} was reachable via {sorted(set(reached))}\n{outcome.explain()}"
    )
    arena.assert_contained(outcome)


UNIX_SOCKETS = r"""
M = T['mark'].encode()
def unix(address, kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_UNIX, kind)
    s.settimeout(2)
    s.connect(address)
    s.sendall(b'hello ' + M)
    s.close()
attempt('unix path socket', unix, T['unix_path'])
attempt('abstract socket', unix, '\0' + T['abstract_name'])
attempt('unix dgram to path', lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(M, T['unix_path']))
attempt('unix seqpacket', unix, T['unix_path'], socket.SOCK_SEQPACKET)
# Through /proc: the host's sockets, and a listening socket named by inode in /proc/net/unix.
attempt('read /proc/net/unix', lambda: [l for l in read('/proc/net/unix').decode().splitlines() if 'rlm-sec' in l or 'listen.sock' in l])
# socketpair stays allowed (a cell may use it); it must not lead outside.
a, b = socket.socketpair()
attempt('socketpair works', lambda: (a.sendall(b'x'), b.recv(1)))
attempt('connect a socketpair end', a.connect, T['unix_path'])
import subprocess
attempt('child unix', subprocess.run, [sys.executable, '-c',
        'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"child")', T['unix_path']], timeout=10)
"""


@pytest.mark.slow
def test_unix_sockets_path_named_and_abstract_are_unreachable(arena: Arena) -> None:
    """connect()/sendto() to a listening path-named AF_UNIX socket and an abstract one (stream,
    dgram, seqpacket; from the worker and from a child) -> the listeners saw nothing."""
    outcome = arena.run("unix", UNIX_SOCKETS)
    outcome.assert_answered()
    arena.assert_no_connections(outcome)
    arena.assert_contained(outcome)

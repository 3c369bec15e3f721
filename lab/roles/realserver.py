"""Real servers: the identity service that tells a client who answered.

The service runs in a process forked into the real server's namespace (no
interpreter start, no imports: it is ready in milliseconds, even in the slow
VM). For TCP, on every accepted connection it first sends one line::

    <server-name> <client-ip> <client-port> <local-ip> <local-port>\\n

(the local address is the one the client connected to: the VIP under DR),
then echoes whatever the client sends until it closes, so a test can hold
a connection open and keep using it; ``bye\n`` makes the server close first
(so the client, closing second, keeps no TIME_WAIT). For UDP, each datagram is answered
with the same line, sent from the address it was addressed to (IP_PKTINFO),
as a DR real server must.

The process is recorded in the lab's ownership record; teardown and reaping
kill it. It also dies with its parent (PR_SET_PDEATHSIG) unless the lab is
persistent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import selectors
import signal
import socket
import struct

from lab.builder import Lab, netns
from lab.errors import LabError
from lab.model import Topology
from lab.util import scaled, wait_for

BYE = b"bye\n"
PR_SET_PDEATHSIG = 1
IP_PKTINFO = 8
# Resolved now, in the parent: a child forked from a threaded process must not
# take the dynamic loader's lock (another thread may have held it at fork time).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def identity_line(name: str, peer: tuple[object, ...], local: tuple[object, ...]) -> bytes:
    return f"{name} {peer[0]} {peer[1]} {local[0]} {local[1]}\n".encode()


def parse_identity(line: str) -> tuple[str, tuple[str, int], tuple[str, int]]:
    """``"rs1 192.0.2.10 40000 192.0.2.100 80"`` -> (server, client addr, local addr)."""
    f = line.split()
    if len(f) != 5:
        raise ValueError(f"not an identity line: {line!r}")
    return f[0], (f[1], int(f[2])), (f[3], int(f[4]))


def _serve_tcp(sock: socket.socket, name: str) -> None:
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ, sock)
    while True:
        for key, _ in sel.select():
            s: socket.socket = key.data  # each registered with itself as its data
            if s is sock:
                conn, peer = sock.accept()
                try:
                    conn.sendall(identity_line(name, peer, conn.getsockname()))
                except OSError:
                    conn.close()
                    continue
                sel.register(conn, selectors.EVENT_READ, conn)
            else:
                try:
                    data = s.recv(65536)
                    if data and data != BYE:
                        s.sendall(data)
                        continue
                except OSError:
                    pass
                sel.unregister(s)
                s.close()


def _serve_udp(sock: socket.socket, name: str, port: int) -> None:
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    while True:
        data, anc, _flags, peer = sock.recvmsg(65536, socket.CMSG_SPACE(12))
        local = None
        for level, typ, cdata in anc:
            if level == socket.IPPROTO_IP and typ == IP_PKTINFO:
                _ifindex, _spec, dst = struct.unpack("I4s4s", cdata[:12])
                local = socket.inet_ntoa(dst)
        reply = identity_line(name, peer, (local or "0.0.0.0", port))
        cmsg = []
        if local:  # reply from the address the request was sent to (the VIP)
            cmsg = [(socket.IPPROTO_IP, IP_PKTINFO,
                     struct.pack("I4s4s", 0, socket.inet_aton(local), b"\0" * 4))]
        sock.sendmsg([reply], cmsg, 0, peer)


def _child(ns: str, name: str, port: int, protocol: str, persistent: bool, wfd: int,
           family: int = socket.AF_INET, bind: str | None = None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent tears down on Ctrl-C
    if persistent:
        os.setsid()
    else:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    netns.enter_in_child(ns)
    stype = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(family, stype)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((bind or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    if protocol == "tcp":
        sock.listen(512)
    os.write(wfd, b"ok")
    os.close(wfd)
    # hold nothing of the parent's open: not its stdio (a caller reading the
    # parent's output would wait for EOF forever, since a persistent server
    # outlives it), nor its netlink sockets, pipes or captures
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, sock.fileno())
    os.closerange(sock.fileno() + 1, 65536)
    if protocol == "tcp":
        _serve_tcp(sock, name)
    else:
        _serve_udp(sock, name, port)


def start_service(lab: Lab, host: str, port: int | None = None, protocol: str | None = None,
                  timeout: float = 5.0, bind: str | None = None, family: int | None = None) -> int:
    """Start the identity service on ``host`` and return its pid once it listens (on
    every address, or only on ``bind``); port, protocol and family (4 or 6) default
    to the main service's."""
    svc = lab.topology.service
    port = port or (svc.port if svc else 80)
    protocol = protocol or (svc.protocol if svc else "tcp")
    family = family or (svc.family if svc is not None else 4)
    family = socket.AF_INET6 if family == 6 else socket.AF_INET
    if family == socket.AF_INET6 and protocol == "udp":
        raise LabError("the identity service answers UDP over IPv4 only (IP_PKTINFO)")
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(rfd)
            _child(lab.ns(host), host, port, protocol, lab.persistent, wfd, family, bind)
        except BaseException as e:  # report to the parent, then die quietly
            try:
                os.write(wfd, f"error: {e}".encode()[:500])
            except OSError:
                pass
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    lab.add_pid(pid)
    try:
        ready, _, _ = select.select([rfd], [], [], scaled(timeout))
        msg = os.read(rfd, 512).decode(errors="replace") if ready else ""
    finally:
        os.close(rfd)
    if msg != "ok":
        raise LabError(f"identity service on {host} ({protocol}/{port}) did not start: "
                       f"{msg or f'not listening after {scaled(timeout):.1f}s'}")
    return pid


def listeners(topology: Topology) -> dict[str, list[tuple[int, str, int, str | None]]]:
    """Real server -> the sockets its services listen on: ``(port, protocol, family,
    bind)``, ``bind`` None for every address. Each real server listens as its
    ``listen`` says: on every address, on the VIP, only on its RIP, or not at all;
    one wildcard socket serves every VIP of a port."""
    want: dict[str, dict[tuple[int, str, int], set[str | None]]] = {}
    for svc in topology.services:
        for r in svc.real_servers:
            if r.listen == "none":
                continue
            bind = {"any": None, "vip": svc.vip}.get(r.listen, "rip")
            if bind == "rip":
                bind = next((a.ip for i in topology.host(r.host).interfaces
                             for a in i.addresses
                             if a.family == svc.family and a.ip not in topology.vips), None)
            for p in svc.ports:
                want.setdefault(r.host, {}).setdefault((p, svc.protocol, svc.family),
                                                       set()).add(bind)
    return {h: [(p, proto, fam, b) for (p, proto, fam), binds in socks.items()
                for b in ([None] if None in binds else sorted(binds, key=str))]
            for h, socks in want.items()}


def start_services(lab: Lab) -> dict[str, list[int]]:
    """Start the identity service on every real server, on every port of its services
    (as :func:`listeners` says)."""
    return {h: [start_service(lab, h, port=p, protocol=proto, family=fam, bind=b)
                for p, proto, fam, b in socks]
            for h, socks in listeners(lab.topology).items()}


def stop_service(pid: int, timeout: float = 5.0) -> None:
    """Stop an identity service started by :func:`start_service` (its pid), as a
    crashed or stopped daemon: its listening socket is gone when this returns."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)

    def gone() -> bool:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
            return done == pid
        except ChildProcessError:  # not our child (or reaped): poll /proc
            return not os.path.exists(f"/proc/{pid}")
    wait_for(gone, timeout, f"service {pid} to exit")


def service_pids(lab: Lab, host: str) -> list[int]:
    """The live processes the lab started inside ``host``'s namespace (its services)."""
    assert lab.record is not None
    want = os.stat(netns.path(lab.ns(host))).st_ino
    out = []
    for pid, _start in lab.record.pids:
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == want:
                out.append(pid)
        except OSError:
            continue
    return out

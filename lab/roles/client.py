"""The client: connect to VIP:port from inside the client's namespace.

A :class:`Reply` tells which real server answered, the peer address the
client's socket saw (under DR: the VIP, never a real server's address) and
the client address the server saw.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from dataclasses import dataclass

from lab.builder import Lab, netns
from lab.errors import LabError
from lab.roles.realserver import parse_identity
from lab.util import scaled


@dataclass(frozen=True)
class Reply:
    server: str
    #: The peer address as the client's socket reports it (getpeername).
    peer: tuple[str, int]
    #: The client's own address (getsockname).
    local: tuple[str, int]
    #: The client address as the real server saw it.
    server_saw_client: tuple[str, int]
    #: The local address the real server accepted on (the VIP under DR).
    server_local: tuple[str, int]
    seconds: float


class ConnectError(LabError):
    def __init__(self, msg: str, err: int | None = None):
        super().__init__(msg)
        self.errno = err


def read_line(s: socket.socket, deadline: float) -> str:
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            raise ConnectError("no identity line from the server in time")
        try:
            chunk = s.recv(4096)
        except OSError as e:  # an ICMP error or a reset after the handshake
            raise ConnectError(f"connection failed before the identity line: "
                               f"{errno.errorcode.get(e.errno or 0, e)}", e.errno) from None
        if not chunk:
            raise ConnectError(f"server closed before sending its identity (got {buf!r})")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode()


def connect(lab: Lab, host: str = "client", addr: str | None = None, port: int | None = None,
            timeout: float = 3.0, protocol: str | None = None,
            source: str | None = None) -> Reply:
    """Connect from ``host`` (from address ``source``, if given) to ``addr:port``
    (default: the service VIP) and identify."""
    reply, s = open_connection(lab, host, addr, port, timeout, protocol, source)
    s.close()
    return reply


def open_connection(lab: Lab, host: str = "client", addr: str | None = None,
                    port: int | None = None, timeout: float = 3.0,
                    protocol: str | None = None,
                    source: str | None = None) -> tuple[Reply, socket.socket]:
    """Like :func:`connect` but leave the connection open: returns ``(reply, socket)``.

    The identity service echoes what is sent, so the connection stays usable.
    """
    svc = lab.topology.service
    addr = addr or (svc.vip if svc else None)
    port = port or (svc.port if svc else 80)
    protocol = protocol or (svc.protocol if svc else "tcp")
    if addr is None:
        raise LabError("connect: no address given and the topology has no service")
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    start = time.monotonic()
    deadline = start + scaled(timeout)
    if protocol == "udp":
        s = netns.socket_in(lab.ns(host), fam, socket.SOCK_DGRAM)
        if source:
            s.bind((source, 0))
        try:
            s.connect((addr, port))
            s.send(b"who\n")
            line = read_line(s, deadline)
        except ConnectionRefusedError as e:
            s.close()
            raise ConnectError(f"{host} -> {addr}:{port}/udp: refused", e.errno) from None
        except BaseException:
            s.close()
            raise
    else:
        s = netns.socket_in(lab.ns(host), fam, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            if source:
                s.bind((source, 0))
            rc = s.connect_ex((addr, port))
            if rc not in (0, errno.EINPROGRESS):
                raise ConnectError(f"{host} -> {addr}:{port}: {errno.errorcode.get(rc, rc)}",
                                   rc)
            left = max(0.0, deadline - time.monotonic())
            if not select.select([], [s], [], left)[1]:
                raise ConnectError(f"{host} -> {addr}:{port}: no answer within "
                                   f"{scaled(timeout):.1f}s", errno.ETIMEDOUT)
            rc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if rc:
                raise ConnectError(f"{host} -> {addr}:{port}: {errno.errorcode.get(rc, rc)}",
                                   rc)
            line = read_line(s, deadline)
        except BaseException:
            s.close()
            raise
    server, saw_client, server_local = parse_identity(line)
    reply = Reply(server, s.getpeername()[:2], s.getsockname()[:2], saw_client, server_local,
                  time.monotonic() - start)
    s.setblocking(True)
    return reply, s


def start_connect(lab: Lab, host: str = "client", addr: str | None = None,
                  port: int | None = None) -> socket.socket:
    """Begin a non-blocking TCP connect and return the socket (for racing probes)."""
    svc = lab.topology.service
    addr = addr or (svc.vip if svc else "")
    port = port or (svc.port if svc else 80)
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = netns.socket_in(lab.ns(host), fam, socket.SOCK_STREAM)
    s.setblocking(False)
    rc = s.connect_ex((addr, port))
    if rc not in (0, errno.EINPROGRESS):
        s.close()
        raise ConnectError(f"{host} -> {addr}:{port}: {errno.errorcode.get(rc, rc)}", rc)
    return s


def connected(s: socket.socket) -> bool:
    """True once a non-blocking connect has completed successfully."""
    if not select.select([], [s], [], 0)[1]:
        return False
    return s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0

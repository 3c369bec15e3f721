"""Cheap link operations for the builder, without a pyroute2 request each.

Under software emulation every pyroute2 request costs milliseconds of Python
(its event loop, encoding, decoding every attribute of every link). The builder
uses this module for what needs neither:

- :func:`wait_up`: wait for links to reach operstate UP by listening to the
  kernel's link events (rtnetlink group ``RTMGRP_LINK``) after one dump, reading
  only each link's name and operstate: no polling;
- :func:`index`, :func:`set_up`: an interface's index, and bringing it up (with
  its MTU), by the classic ioctls on a socket in the namespace.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import time
from collections.abc import Mapping

from lab.builder import netns
from lab.util import Timeout, scaled

RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_IFNAME, IFLA_OPERSTATE, IFLA_EXT_MASK = 3, 16, 29
RTEXT_FILTER_SKIP_STATS = 1 << 3
IF_OPER_UP = 6
IFF_UP = 0x1
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCSIFMTU, SIOCGIFINDEX = 0x8913, 0x8914, 0x8922, 0x8933

_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTA = struct.Struct("=HH")  # length, type


def _dump_request(seq: int) -> bytes:
    ext = _RTA.pack(8, IFLA_EXT_MASK) + struct.pack("=I", RTEXT_FILTER_SKIP_STATS)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + ext
    return _NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP,
                       seq, 0) + body


def parse(data: bytes) -> dict[str, int | None]:
    """Each link message's name -> operstate (None for a removed link); an error
    message raises :class:`OSError`."""
    out: dict[str, int | None] = {}
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind = _NLMSG.unpack_from(data, off)[:2]
        if length < _NLMSG.size or off + length > len(data):
            break
        if kind == NLMSG_ERROR:  # the dump request refused (an ack would carry 0)
            code = struct.unpack_from("=i", data, off + _NLMSG.size)[0]
            if code:
                raise OSError(-code, f"link dump: {os.strerror(-code)}")
        elif kind in (RTM_NEWLINK, RTM_DELLINK):
            name, oper = None, None
            a, end = off + _NLMSG.size + _IFINFO.size, off + length
            while a + _RTA.size <= end:
                alen, atype = _RTA.unpack_from(data, a)
                if alen < _RTA.size:
                    break
                atype &= 0x3FFF  # without the nested and byte-order flags
                if atype == IFLA_IFNAME:
                    name = data[a + 4:a + alen].split(b"\0", 1)[0].decode()
                elif atype == IFLA_OPERSTATE and alen > 4:
                    oper = data[a + 4]
                a += (alen + 3) & ~3
            if name is not None:
                out[name] = None if kind == RTM_DELLINK else oper
        off += (length + 3) & ~3
    return out


def wait_up(expect: Mapping[str, set[str]], timeout: float, what: str) -> None:
    """Return once every link in ``expect`` (namespace -> link names) is UP.

    Subscribes to each namespace's link events, then dumps its links; an event
    that comes after the dump updates it, so nothing is missed and nothing is
    polled. Raises :class:`lab.util.Timeout` naming the links still not up after
    ``timeout`` (scaled) seconds."""
    socks: dict[int, tuple[str, socket.socket]] = {}
    state: dict[str, dict[str, int | None]] = {ns: {} for ns in expect}
    deadline = time.monotonic() + scaled(timeout)
    try:
        for ns, names in expect.items():
            if not names:
                continue
            s = netns.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            socks[s.fileno()] = (ns, s)
            s.bind((0, RTMGRP_LINK))
            s.setblocking(False)
            s.send(_dump_request(1))
        while True:
            missing = [f"{ns}/{n}" for ns, names in expect.items() for n in sorted(names)
                       if state[ns].get(n) != IF_OPER_UP]
            if not missing:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"timed out after {scaled(timeout):.1f}s waiting for {what}: "
                              f"not up: {', '.join(missing)}")
            ready = select.select(list(socks), [], [], left)[0]
            for fd in ready:
                ns, s = socks[fd]
                _drain(s, state[ns])
    finally:
        for _, s in socks.values():
            s.close()


def _drain(s: socket.socket, state: dict[str, int | None]) -> None:
    while True:
        try:
            data = s.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.ENOBUFS:
                raise
            s.send(_dump_request(2))  # events were lost: read the state again
            continue
        state.update(parse(data))


def _ifreq(name: str, fmt: str = "", *values: int) -> bytes:
    return struct.pack("16s" + fmt, name.encode(), *values).ljust(40, b"\0")


def index(sock: socket.socket, name: str) -> int:
    """The index of interface ``name`` in the namespace of ``sock`` (any socket there)."""
    req = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, _ifreq(name))
    ifindex: int = struct.unpack_from("i", req, 16)[0]
    return ifindex


def set_up(sock: socket.socket, name: str, mtu: int | None = None) -> None:
    """Set ``name``'s MTU (if given), then bring it up, in the namespace of ``sock``."""
    if mtu:
        fcntl.ioctl(sock.fileno(), SIOCSIFMTU, _ifreq(name, "i", mtu))
    flags = struct.unpack_from("H", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, _ifreq(name)), 16)[0]
    if not flags & IFF_UP:
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, _ifreq(name, "H", flags | IFF_UP))

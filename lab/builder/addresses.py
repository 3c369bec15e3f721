"""Many addresses in few netlink requests: RTM_NEWADDR messages batched per ``send``.

A real server of a scale lab holds 50,000 VIPs. One request per address (pyroute2's
``IPRoute.addr``: encode, send, wait for the answer) costs a round trip and a Python
encoding each. Here the messages are packed with :mod:`struct` (the layout of
``struct nlmsghdr`` and ``struct ifaddrmsg``, linux/netlink.h and linux/if_addr.h)
and sent :data:`BATCH` to a datagram, as libmnl's ``mnl_nlmsg_batch`` does: the
kernel handles every message of a datagram in turn (``netlink_rcv_skb``). Only the
last one of a batch asks for an acknowledgement; a failure is answered whatever the
flags, so errors are never lost.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable

from lab.builder import netns
from lab.errors import LabError
from lab.model import Address

RTM_NEWADDR = 20
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFA_ADDRESS, IFA_LOCAL = 1, 2
NETLINK_CAP_ACK = 10  # (errors do not echo the whole request back)
SOL_NETLINK = 270
SCOPES = {"global": 0, "link": 253, "host": 254}
#: Messages per datagram: 1,000 IPv4 requests are 40 kB, well under the socket's
#: send buffer (the kernel refuses a datagram larger than it).
BATCH = 1000
_HDR = struct.Struct("=IHHII")  # struct nlmsghdr
_IFA = struct.Struct("=BBBBI")  # struct ifaddrmsg


def newaddr(seq: int, index: int, a: Address, ack: bool) -> bytes:
    """One RTM_NEWADDR request: ``a`` on interface ``index`` (IFA_LOCAL and IFA_ADDRESS
    the same address, as ``ip addr add`` sends them)."""
    ip = a.interface.ip
    raw = ip.packed
    fam = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    attr = struct.pack("=HH", 4 + len(raw), IFA_LOCAL) + raw + \
        struct.pack("=HH", 4 + len(raw), IFA_ADDRESS) + raw
    body = _IFA.pack(fam, a.prefixlen, 0, SCOPES[a.scope], index) + attr
    flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | (NLM_F_ACK if ack else 0)
    return _HDR.pack(_HDR.size + len(body), RTM_NEWADDR, flags, seq, 0) + body


def add(ns: str, items: Iterable[tuple[int, Address]], batch: int = BATCH) -> int:
    """Add every ``(interface index, address)`` in namespace ``ns``, ``batch`` requests
    to a datagram; return how many. Raises :class:`LabError` naming the first address
    the kernel refused (and why)."""
    todo = list(items)
    if not todo:
        return 0
    sock = netns.socket_in(ns, socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    with sock:
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        sock.bind((0, 0))
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            last = start + len(chunk)  # sequence numbers are 1-based positions in todo
            sock.send(b"".join(newaddr(start + k + 1, idx, a, k == len(chunk) - 1)
                               for k, (idx, a) in enumerate(chunk)))
            failed = _answers(sock, last)
            if failed:
                seq, err = failed[0]
                idx, a = todo[seq - 1]
                more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
                raise LabError(f"adding {a.cidr} to interface {idx} in {ns} failed: "
                               f"{os.strerror(err)}{more}")
    return len(todo)


def _answers(sock: socket.socket, last: int) -> list[tuple[int, int]]:
    """Read answers until the acknowledgement of request ``last``; return the failed
    requests as ``(seq, errno)``."""
    failed: list[tuple[int, int]] = []
    while True:
        data = sock.recv(1 << 20)
        off = 0
        while off + _HDR.size <= len(data):
            length, typ, _flags, seq, _pid = _HDR.unpack_from(data, off)
            if typ == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", data, off + _HDR.size)
                if err:
                    failed.append((seq, -err))
                if seq == last:
                    return failed
            off += (length + 3) & ~3
            if length == 0:
                break

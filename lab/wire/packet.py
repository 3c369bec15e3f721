"""Raw frames in and out of a lab host: AF_PACKET sockets inside its namespace.

The lowest layer the roles and probes share for the wire: open a packet
socket bound to one interface of one host, send frames built by
:mod:`lab.wire.frames`, and read queued frames with their kernel timestamps.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.builder import Lab, netns

if TYPE_CHECKING:  # scapy is imported when a frame is decoded, not with this module
    from scapy.packet import Packet

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23


@dataclass(frozen=True)
class Frame:
    ts: float
    data: bytes
    outgoing: bool

    def packet(self) -> Packet:
        """The frame decoded by scapy (Ether/...)."""
        # lazy: scapy takes ~1 s to import (~10 s in the VM)
        import scapy.layers.inet  # noqa: F401  (binds IP/TCP/UDP/ICMP to Ether)
        import scapy.layers.inet6  # noqa: F401
        from scapy.layers.l2 import Ether

        return Ether(self.data)


def packet_socket(lab: Lab, host: str, iface: str, proto: int = ETH_P_ALL,
                  rcvbuf: int = 4 << 20) -> socket.socket:
    """A raw AF_PACKET socket inside ``host``'s namespace, bound to ``iface``.

    Created with protocol 0 and bound with ``proto``: a socket created with a
    protocol registers a tap on every device and re-binding it costs an RCU
    grace period (~10 ms); this way binding registers once.
    """
    s = netns.socket_in(lab.ns(host), socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        with netns.entered(lab.ns(host)):  # the name is resolved in the socket's namespace
            s.bind((iface, proto))
    except BaseException:
        s.close()
        raise
    return s


def recv_frame(s: socket.socket) -> Frame | None:
    """One queued frame, or None if the queue is empty (socket must be non-blocking)."""
    try:
        data, anc, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(16))
    except BlockingIOError:
        return None
    except OSError as e:
        if e.errno == errno.EAGAIN:
            return None
        raise
    ts = 0.0
    for level, typ, cdata in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", cdata[:16])
            ts = sec + nsec / 1e9
    return Frame(ts, data, addr[2] == PACKET_OUTGOING)

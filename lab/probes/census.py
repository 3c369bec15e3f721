"""One census engine for ARP and NDP: who answers for an address on a segment.

From a lab host, send a request for ``target`` (ARP who-has, or an NDP
Neighbor Solicitation) and collect every answer, attributing each MAC to its
lab host. When two hosts answer, both are reported: which one "wins" depends
on the bridge's flood order, so never assert a winner.

A negative answer ("nobody else answers") must not cost a long fixed
timeout. Right after the request the census sends each other host on the
segment *barriers* (a request for that host's own address, and for IPv4 an
ICMP echo request). A host handles frames from one sender in order, so once
a barrier answer is back, any answer it was going to send for the target has
already arrived. The census ends when every host has answered a barrier
(usually within milliseconds); only hosts that answer none fall back to the
window, and then the request and barriers go out once more (a second window):
on a loaded machine a segment built a moment ago can stay silent longer than
one window, and a census that heard nothing from a host says nothing about it.

:func:`lab.probes.arp.census` and :func:`lab.probes.ndp.ndp_census` are this
engine with their frames.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.builder import Lab
from lab.util import close_soon, scaled
from lab.wire.packet import packet_socket


@dataclass
class Census:
    """Who answered a request for ``target`` on the segment of ``asker``."""

    target: str
    asker: str
    #: host name (or the MAC if no lab host has it) -> MACs it answered with.
    responders: dict[str, list[str]] = field(default_factory=dict)
    #: Hosts whose barrier came back: their silence is certain.
    certain: list[str] = field(default_factory=list)
    #: Hosts that did not answer their barrier: silence only up to the window.
    uncertain: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def hosts(self) -> set[str]:
        return set(self.responders)

    def __str__(self) -> str:
        who = ", ".join(f"{h} ({', '.join(m)})" for h, m in sorted(self.responders.items()))
        return (f"who-has {self.target} from {self.asker}: "
                f"{who or 'nobody'} answered in {self.seconds * 1000:.1f} ms"
                + (f"; no barrier reply from {', '.join(self.uncertain)}"
                   if self.uncertain else ""))


@dataclass(frozen=True)
class Peer:
    """Another host on the asker's segment: where its barrier goes."""

    host: str
    iface: str
    ip: str
    mac: str


def segment_peers(lab: Lab, host: str, iface: str, family: int) -> list[Peer]:
    """Every other host on ``host``/``iface``'s segment, with its first address of
    ``family`` that is not the service's VIP."""
    t = lab.topology
    seg = t.host(host).interface(iface).segment
    vip = t.service.vip if t.service else None
    out = []
    for h in t.hosts:
        if h.name == host:
            continue
        for i in h.interfaces:
            if i.segment != seg:
                continue
            ip = next((a.ip for a in i.addresses if a.family == family and a.ip != vip), None)
            if ip is not None:
                out.append(Peer(h.name, i.name, ip, lab.mac(h.name, i.name)))
                break
    return out


@dataclass(frozen=True)
class Answer:
    """What one received frame says: ``mac`` answered for ``ip`` (an address
    answer), or the host at ``ip`` answered a barrier (``barrier=True``)."""

    mac: str
    ip: str
    barrier: bool = False


def run(lab: Lab, asker: str, iface: str, target: str, family: int,
        frames: Callable[[list[Peer]], list[bytes]],
        parse: Callable[[bytes], Answer | None], window: float) -> Census:
    """Send ``frames(peers)`` (the request first, then the barriers) from
    ``asker``/``iface`` and read answers with ``parse`` until every peer has
    answered a barrier or ``window`` (scaled) has passed; if some peer answered no
    barrier, once more (the request included)."""
    peers = segment_peers(lab, asker, iface, family)
    pending = {ipaddress.ip_address(p.ip): p.host for p in peers}
    want = ipaddress.ip_address(target)
    result = Census(target, asker)
    s = packet_socket(lab, asker, iface)
    start = time.monotonic()
    try:
        for _round in range(2):
            if not pending:
                break
            for frame in frames(peers):
                s.send(frame)
            deadline = time.monotonic() + scaled(window)
            _collect(s, parse, pending, want, result, lab, deadline)
        result.uncertain = sorted(pending.values())
    finally:
        close_soon(s)
    result.seconds = time.monotonic() - start
    return result


def _collect(s: socket.socket, parse: Callable[[bytes], Answer | None], pending: dict[Any, str],
             want: Any, result: Census, lab: Lab, deadline: float) -> None:
    """Read answers until every peer answered a barrier or ``deadline`` passed."""
    while pending:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            break
        a = parse(s.recv(2048))
        if a is None:
            continue
        ip = ipaddress.ip_address(a.ip)
        if a.barrier:
            if ip in pending:
                result.certain.append(pending.pop(ip))
            continue
        who = lab.host_of_mac(a.mac) or a.mac
        if ip == want:
            macs = result.responders.setdefault(who, [])
            if a.mac not in macs:
                macs.append(a.mac)
        if pending.get(ip) == who:  # it answered for its own address: a barrier
            result.certain.append(pending.pop(ip))

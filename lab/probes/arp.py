"""ARP probes: who answers for an address, and what ARP the hosts send.

**Census** (:func:`census`): from a lab host, broadcast ``who-has VIP`` and
collect every reply, attributed to lab hosts by MAC, with barriers instead of
a fixed timeout (see :mod:`lab.probes.census`). **Announcements**: the ARP
requests a real server sends while serving, and whose address they say
"tell". **Neighbour tables**: flush them, and ask which host an entry points to.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from lab.builder import Lab
from lab.probes import census as engine
from lab.probes.capture import Capture
from lab.probes.census import Census
from lab.probes.state import neighbours
from lab.roles import client
from lab.wire.frames import ArpPacket, arp_frame, echo_frame, parse_arp, parse_echo_reply

__all__ = ["Announcements", "Census", "announcements", "census", "flush_neighbours",
           "pinned", "resolves_to"]


def census(lab: Lab, target: str | None = None, asker: str = "client", iface: str = "eth0",
           window: float = 0.5) -> Census:
    """Broadcast who-has ``target`` (default: the VIP) from ``asker`` and collect replies.

    Each other host on the segment gets two barriers right after the request:
    who-has <its own address>, and an ICMP echo request to its MAC (answered
    even by a host that ignores all ARP, like arp_ignore=8). Whichever comes
    back first proves the host has already handled the census request.
    ``window`` bounds the wait for hosts that answer neither; it is scaled by
    ``DRLAB_TIMEOUT_SCALE``.
    """
    t = lab.topology
    target = target or (t.service.vip if t.service else None)
    if target is None:
        raise ValueError("census: no target and no service VIP")
    src_mac = lab.mac(asker, iface)
    src_ip = next((a.ip for a in t.host(asker).interface(iface).addresses if a.family == 4),
                  None)
    if src_ip is None:
        raise ValueError(f"census: {asker}/{iface} has no IPv4 address")
    ident = random.getrandbits(16)

    def frames(peers: list[engine.Peer]) -> list[bytes]:
        out = [arp_frame(1, src_mac, src_ip, target)]
        for seq, p in enumerate(peers):
            if p.ip != target:  # the target's owner answers the request itself
                out.append(arp_frame(1, src_mac, src_ip, p.ip))
            out.append(echo_frame(src_mac, p.mac, src_ip, p.ip, ident, seq))
        return out

    def parse(frame: bytes) -> engine.Answer | None:
        echo = parse_echo_reply(frame, ident)
        if echo is not None:
            return engine.Answer("", echo[0], barrier=True)
        a = parse_arp(frame)
        if a is None or a.op != 2 or a.pdst != src_ip:
            return None
        return engine.Answer(a.hwsrc, a.psrc)

    return engine.run(lab, asker, iface, target, 4, frames, parse, window)


@dataclass
class Announcements:
    """ARP requests a real server sent while serving one connection from the VIP."""

    server: str
    requests: list[ArpPacket]

    @property
    def senders(self) -> set[str]:
        """Sender IPs of the requests: the RIP when arp_announce=2, the VIP when 0."""
        return {a.psrc for a in self.requests}


def announcements(lab: Lab, rs: str | None = None, client_host: str = "client") -> Announcements:
    """Force a fresh resolution and capture the ARP requests a real server sends.

    One connection first, so the client already has an entry for the VIP and
    will not ARP for it again (an ARP request from the client would teach the
    real servers its MAC for free). Then every real server's neighbour table
    is flushed, so its reply needs an ARP request, and the client connects
    until ``rs`` (or anyone, if None) serves; returns the requests that server
    sent.
    """
    client.connect(lab, client_host)
    rss = [h.name for h in lab.topology.real_servers]
    for h in rss:
        flush_neighbours(lab, h)
    caps = {h: Capture(lab, h, lab.topology.lan_iface(h)).start() for h in rss}
    server = None
    try:
        for _ in range(len(rss) * 2):
            server = client.connect(lab, client_host).server
            if rs is None or server == rs:
                break
    finally:
        for c in caps.values():
            c.stop()
    if server is None or (rs is not None and server != rs):
        raise AssertionError(f"{rs} never served in {len(rss) * 2} connections")
    mac = lab.mac(server, lab.topology.lan_iface(server))
    reqs = [a for f in caps[server].frames if f.outgoing and (a := parse_arp(f.data))
            and a.op == 1 and a.hwsrc == mac]
    return Announcements(server, reqs)


def flush_neighbours(lab: Lab, host: str) -> None:
    """Delete every IPv4 neighbour entry of ``host``."""
    ipr = lab.ipr(host)
    for n in ipr.get_neighbours(family=socket.AF_INET):
        ipr.neigh("del", dst=n.get("dst"), ifindex=n["ifindex"])


#: NUD_PERMANENT (include/uapi/linux/neighbour.h): an entry ARP/NDP never changes.
NUD_PERMANENT = 0x80


@contextlib.contextmanager
def pinned(lab: Lab, host: str, ip: str, mac: str, iface: str) -> Iterator[None]:
    """While the block runs, ``host``'s neighbour entry for ``ip`` on ``iface`` is
    ``mac``, permanent: no ARP (NDP) answer can move it. Deleted afterwards (the
    next resolution asks again)."""
    ipr = lab.ipr(host)
    idx = ipr.link_lookup(ifname=iface)[0]
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    ipr.neigh("replace", dst=ip, lladdr=mac, ifindex=idx, family=family,
              state=NUD_PERMANENT)
    try:
        yield
    finally:
        ipr.neigh("del", dst=ip, ifindex=idx, family=family)


def resolves_to(lab: Lab, host: str, ip: str) -> str | None:
    """Which lab host ``host``'s kernel neighbour table maps ``ip`` to (its MAC if unknown)."""
    mac = neighbours(lab, host).get(ip)
    if mac is None:
        return None
    return lab.host_of_mac(mac) or mac

"""ARP probes: who answers for an address, and what ARP the hosts send.

**Census.** From a lab host, broadcast ``who-has VIP`` and collect every reply,
attributing each MAC to its lab host. When two hosts answer, both are
reported: which one "wins" depends on the bridge's flood order, so never
assert a winner.

A negative answer ("nobody else answers") must not cost a long fixed
timeout. Right after the VIP request the census sends each other host on the
segment *barriers*: ``who-has <that host's own address>`` and an ICMP echo
request. A host handles frames from one sender in order, so once a barrier
reply is back, any reply it was going to send for the VIP has already
arrived. The census ends when every host has answered a barrier (usually
within milliseconds); only hosts that answer neither fall back to the window.
"""

from __future__ import annotations

import random
import select
import socket
import time
from dataclasses import dataclass, field

from lab.builder import Lab
from lab.probes.capture import packet_socket
from lab.util import close_soon, scaled

BROADCAST = "ff:ff:ff:ff:ff:ff"


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def _mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def arp_frame(op: int, src_mac: str, psrc: str, pdst: str, dst_mac: str = BROADCAST,
              hwdst: str = "00:00:00:00:00:00") -> bytes:
    """An Ethernet ARP frame (op 1 request, 2 reply), built without scapy for speed."""
    return (_mac_bytes(dst_mac) + _mac_bytes(src_mac) + b"\x08\x06"
            + b"\x00\x01\x08\x00\x06\x04" + op.to_bytes(2, "big")
            + _mac_bytes(src_mac) + socket.inet_aton(psrc)
            + _mac_bytes(hwdst) + socket.inet_aton(pdst))


@dataclass(frozen=True)
class ArpPacket:
    op: int  # 1 request, 2 reply
    eth_src: str
    eth_dst: str
    hwsrc: str
    psrc: str
    hwdst: str
    pdst: str


def parse_arp(frame: bytes) -> ArpPacket | None:
    """Decode an Ethernet/IPv4 ARP frame, or None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06" or \
            frame[14:20] != b"\x00\x01\x08\x00\x06\x04":
        return None
    a = frame[14:]
    return ArpPacket(int.from_bytes(a[6:8], "big"), _mac_str(frame[6:12]), _mac_str(frame[0:6]),
                     _mac_str(a[8:14]), socket.inet_ntoa(a[14:18]), _mac_str(a[18:24]),
                     socket.inet_ntoa(a[24:28]))


@dataclass
class Census:
    """Who answered ``who-has target`` on the segment of ``asker``."""

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


def _segment_peers(lab: Lab, host: str, iface: str) -> list[tuple[str, str, str]]:
    """(host, interface, IPv4 address) of every other host on ``host``/``iface``'s segment."""
    t = lab.topology
    seg = t.host(host).interface(iface).segment
    svc_vip = t.service.vip if t.service else None
    out = []
    for h in t.hosts:
        if h.name == host:
            continue
        for i in h.interfaces:
            if i.segment != seg:
                continue
            for a in i.addresses:
                if a.family == 4 and a.ip != svc_vip:
                    out.append((h.name, i.name, a.ip))
                    break
    return out


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, ident: int,
               seq: int) -> bytes:
    """An Ethernet/IPv4 ICMP echo request, built by hand (no scapy on the hot path)."""
    icmp = bytearray(b"\x08\x00\x00\x00" + ident.to_bytes(2, "big") + seq.to_bytes(2, "big")
                     + b"drlab-barrier")
    icmp[2:4] = _checksum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(b"\x45\x00" + (20 + len(icmp)).to_bytes(2, "big") + b"\x00\x00\x40\x00"
                   + b"\x40\x01\x00\x00" + socket.inet_aton(src_ip) + socket.inet_aton(dst_ip))
    ip[10:12] = _checksum(bytes(ip)).to_bytes(2, "big")
    return _mac_bytes(dst_mac) + _mac_bytes(src_mac) + b"\x08\x00" + bytes(ip) + bytes(icmp)


def _echo_reply(frame: bytes, ident: int) -> tuple[str, int] | None:
    """(source IP, seq) if ``frame`` is an ICMP echo reply with identifier ``ident``."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return None
    l4 = 14 + (frame[14] & 0x0F) * 4
    if frame[l4] != 0 or int.from_bytes(frame[l4 + 4:l4 + 6], "big") != ident:
        return None
    return socket.inet_ntoa(frame[26:30]), int.from_bytes(frame[l4 + 6:l4 + 8], "big")


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
    peers = _segment_peers(lab, asker, iface)
    pending = {ip: h for h, _i, ip in peers}
    ident = random.getrandbits(16)
    result = Census(target, asker)
    s = packet_socket(lab, asker, iface)
    start = time.monotonic()
    try:
        s.send(arp_frame(1, src_mac, src_ip, target))
        for seq, (h, i, ip) in enumerate(peers):
            if ip != target:  # the target's owner answers the request itself
                s.send(arp_frame(1, src_mac, src_ip, ip))
            s.send(echo_frame(src_mac, lab.mac(h, i), src_ip, ip, ident, seq))
        deadline = start + scaled(window)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            frame = s.recv(2048)
            echo = _echo_reply(frame, ident)
            if echo is not None:
                if echo[0] in pending:
                    result.certain.append(pending.pop(echo[0]))
                continue
            a = parse_arp(frame)
            if a is None or a.op != 2 or a.pdst != src_ip:
                continue
            who = lab.host_of_mac(a.hwsrc) or a.hwsrc
            if a.psrc == target:
                macs = result.responders.setdefault(who, [])
                if a.hwsrc not in macs:
                    macs.append(a.hwsrc)
            if a.psrc in pending and pending[a.psrc] == who:
                result.certain.append(pending.pop(a.psrc))
        result.uncertain = sorted(pending.values())
    finally:
        close_soon(s)
    result.seconds = time.monotonic() - start
    return result


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
    from lab.probes.capture import Capture
    from lab.roles import client

    client.connect(lab, client_host)
    rss = [h.name for h in lab.topology.real_servers]
    for h in rss:
        flush_neighbours(lab, h)
    caps = {h: Capture(lab, h, _lan_iface(lab, h)).start() for h in rss}
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
    mac = lab.mac(server, _lan_iface(lab, server))
    reqs = [a for f in caps[server].frames if f.outgoing and (a := parse_arp(f.data))
            and a.op == 1 and a.hwsrc == mac]
    return Announcements(server, reqs)


def flush_neighbours(lab: Lab, host: str) -> None:
    """Delete every IPv4 neighbour entry of ``host``."""
    ipr = lab.ipr(host)
    for n in ipr.get_neighbours(family=socket.AF_INET):
        ipr.neigh("del", dst=n.get("dst"), ifindex=n["ifindex"])


def resolves_to(lab: Lab, host: str, ip: str) -> str | None:
    """Which lab host ``host``'s kernel neighbour table maps ``ip`` to (its MAC if unknown)."""
    from lab.probes.state import neighbours

    mac = neighbours(lab, host).get(ip)
    if mac is None:
        return None
    return lab.host_of_mac(mac) or mac


def _lan_iface(lab: Lab, host: str) -> str:
    dsegs = {i.segment for i in lab.topology.director.interfaces}
    return next(i.name for i in lab.topology.host(host).interfaces if i.segment in dsegs)

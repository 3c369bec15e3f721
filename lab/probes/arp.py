"""ARP probes: who answers for an address, and what ARP the hosts send.

**Census.** From a lab host, broadcast ``who-has VIP`` and collect every reply,
attributing each MAC to its lab host. When two hosts answer, both are
reported: which one "wins" depends on the bridge's flood order, so never
assert a winner.

A negative answer ("nobody else answers") must not cost a long fixed
timeout. Right after the VIP request the census sends each other host on the
segment a *barrier*: ``who-has <that host's own address>``. A host handles
frames from one sender in order, so once its barrier reply is back, any reply
it was going to send for the VIP has already arrived. The census ends when
every barrier is answered (usually within a millisecond); only hosts that do
not answer for their own address (arp_ignore=8, say) fall back to the
window.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time
from dataclasses import dataclass, field

from lab.builder import Lab
from lab.probes.capture import ETH_P_ARP, packet_socket
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
    out = []
    for h in t.hosts:
        if h.name == host:
            continue
        for i in h.interfaces:
            if i.segment != seg:
                continue
            svc_vip = t.service.vip if t.service else None
            for a in i.addresses:
                if a.family == 4 and a.ip != svc_vip:
                    out.append((h.name, i.name, a.ip))
                    break
    return out


def census(lab: Lab, target: str | None = None, asker: str = "client", iface: str = "eth0",
           window: float = 0.5) -> Census:
    """Broadcast who-has ``target`` (default: the VIP) from ``asker`` and collect replies.

    ``window`` bounds the wait for hosts that do not answer their barrier; it
    is scaled by ``DRLAB_TIMEOUT_SCALE``.
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
    # a barrier per other host: who-has <its own address>. A host whose own
    # address is the target has no separate barrier: its answer to the target
    # (from its own MAC) is the barrier.
    pending = {ip: h for h, _i, ip in peers}
    result = Census(target, asker)
    s = packet_socket(lab, asker, iface, ETH_P_ARP)
    start = time.monotonic()
    try:
        s.send(arp_frame(1, src_mac, src_ip, target))
        for ip in pending:
            if ip != target:
                s.send(arp_frame(1, src_mac, src_ip, ip))
        deadline = start + scaled(window)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            a = parse_arp(s.recv(2048))
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


def in_subnet(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_interface(cidr).network

"""NDP census: who answers a Neighbor Solicitation for an IPv6 address (the VIP).

The IPv6 twin of :func:`lab.probes.arp.census`. Linux answers a solicitation
only for addresses on the receiving interface, so a VIP on ``lo`` is not
answered by a real server, with no sysctl at all. Barriers work the same way:
right after the solicitation for the target, each other host on the segment
is solicited for its own address; once it has answered, its answer (or
silence) about the target is final.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import time

from lab.builder import Lab
from lab.probes.arp import Census, _lan_iface
from lab.probes.capture import packet_socket
from lab.util import close_soon, scaled


def solicitation(src_mac: str, src_ip: str, target: str) -> bytes:
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import Ether

    t = ipaddress.IPv6Address(target).packed
    group = "ff02::1:ff" + t[13:14].hex() + ":" + t[14:16].hex()
    mac = "33:33:ff:" + ":".join(f"{b:02x}" for b in t[13:16])
    return bytes(Ether(src=src_mac, dst=mac) / IPv6(src=src_ip, dst=group, hlim=255)
                 / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=src_mac))


def parse_advert(frame: bytes) -> tuple[str, str] | None:
    """(source MAC, target address) of a Neighbor Advertisement, else None."""
    if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[20] != 58 or frame[54] != 136:
        return None
    mac = ":".join(f"{b:02x}" for b in frame[6:12])
    return mac, socket.inet_ntop(socket.AF_INET6, frame[62:78])


def ndp_census(lab: Lab, target: str | None = None, asker: str = "client",
               window: float = 0.5) -> Census:
    t = lab.topology
    target = target or (t.service.vip if t.service else None)
    if target is None:
        raise ValueError("ndp_census: no target and no service VIP")
    iface = _lan_iface(lab, asker)  # the asker's interface on the director's segment
    me = t.host(asker).interface(iface)
    src_ip = next(a.ip for a in me.addresses if a.family == 6)
    src_mac = lab.mac(asker, iface)
    peers = []
    for h in t.hosts:
        if h.name == asker:
            continue
        for i in h.interfaces:
            if i.segment == me.segment:
                ip = next((a.ip for a in i.addresses if a.family == 6 and
                           (t.service is None or a.ip != t.service.vip)), None)
                if ip:
                    peers.append((h.name, ip))
    pending = {ip: h for h, ip in peers}
    result = Census(target, asker)
    s = packet_socket(lab, asker, iface)
    start = time.monotonic()
    try:
        s.send(solicitation(src_mac, src_ip, target))
        for _h, ip in peers:
            if ip != target:
                s.send(solicitation(src_mac, src_ip, ip))
        deadline = start + scaled(window)
        while pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            na = parse_advert(s.recv(2048))
            if na is None:
                continue
            mac, tgt = na
            who = lab.host_of_mac(mac) or mac
            if ipaddress.ip_address(tgt) == ipaddress.ip_address(target):
                macs = result.responders.setdefault(who, [])
                if mac not in macs:
                    macs.append(mac)
            key = next((ip for ip in pending
                        if ipaddress.ip_address(ip) == ipaddress.ip_address(tgt)), None)
            if key is not None and pending[key] == who:
                result.certain.append(pending.pop(key))
        result.uncertain = sorted(pending.values())
    finally:
        close_soon(s)
    result.seconds = time.monotonic() - start
    return result

"""Frames by hand: build and decode the few kinds the lab sends and checks.

A minimal Ethernet/IPv4/IPv6/TCP/UDP decoder for the probes' own checks, and
builders/parsers for ARP, ICMP echo and NDP frames. scapy decodes for humans
(pcaps, reports); this is fast enough to run over every captured frame in the
slow VM, and needs nothing above the wire.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

BROADCAST = "ff:ff:ff:ff:ff:ff"


def mac_str(b: bytes) -> str:
    """``02:d1:00:00:01:01`` from 6 bytes (the lab's one MAC formatter)."""
    return ":".join(f"{x:02x}" for x in b)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


TCP_FLAGS = "FSRPAUEC"  # bit 0 upwards, as scapy prints them: "SA", "PA", "FA"


@dataclass(frozen=True)
class Decoded:
    eth_src: str
    eth_dst: str
    ethertype: int
    src: str = ""
    dst: str = ""
    proto: int = 0  # 6 tcp, 17 udp, 1 icmp, 58 icmpv6
    sport: int = 0
    dport: int = 0
    flags: str = ""  # TCP flags, e.g. "S", "SA", "PA"

    @property
    def is_ip(self) -> bool:
        return self.ethertype in (0x0800, 0x86DD)

    def summary(self) -> str:
        if not self.is_ip:
            return f"{self.eth_src} > {self.eth_dst} type {self.ethertype:#06x}"
        l4 = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}.get(self.proto, str(self.proto))
        ports = f":{self.sport} > {self.dst}:{self.dport}" if self.proto in (6, 17) else \
            f" > {self.dst}"
        fl = f" [{self.flags}]" if self.flags else ""
        return f"{self.eth_src} > {self.eth_dst} {l4} {self.src}{ports}{fl}"


def decode(frame: bytes) -> Decoded:
    eth_dst, eth_src = mac_str(frame[0:6]), mac_str(frame[6:12])
    et = int.from_bytes(frame[12:14], "big")
    if et == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        proto = frame[23]
        src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
        l4 = 14 + ihl
    elif et == 0x86DD and len(frame) >= 54:
        proto = frame[20]
        src = socket.inet_ntop(socket.AF_INET6, frame[22:38])
        dst = socket.inet_ntop(socket.AF_INET6, frame[38:54])
        l4 = 54
    else:
        return Decoded(eth_src, eth_dst, et)
    sport = dport = 0
    flags = ""
    if proto in (6, 17) and len(frame) >= l4 + 4:
        sport = int.from_bytes(frame[l4:l4 + 2], "big")
        dport = int.from_bytes(frame[l4 + 2:l4 + 4], "big")
        if proto == 6 and len(frame) >= l4 + 14:
            bits = frame[l4 + 13]
            flags = "".join(c for n, c in enumerate(TCP_FLAGS) if bits & (1 << n))
    return Decoded(eth_src, eth_dst, et, src, dst, proto, sport, dport, flags)


# -- ARP --------------------------------------------------------------------

def arp_frame(op: int, src_mac: str, psrc: str, pdst: str, dst_mac: str = BROADCAST,
              hwdst: str = "00:00:00:00:00:00") -> bytes:
    """An Ethernet ARP frame (op 1 request, 2 reply), built without scapy for speed."""
    return (mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x06"
            + b"\x00\x01\x08\x00\x06\x04" + op.to_bytes(2, "big")
            + mac_bytes(src_mac) + socket.inet_aton(psrc)
            + mac_bytes(hwdst) + socket.inet_aton(pdst))


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
    return ArpPacket(int.from_bytes(a[6:8], "big"), mac_str(frame[6:12]), mac_str(frame[0:6]),
                     mac_str(a[8:14]), socket.inet_ntoa(a[14:18]), mac_str(a[18:24]),
                     socket.inet_ntoa(a[24:28]))


# -- ICMP echo --------------------------------------------------------------

def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
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
    icmp[2:4] = checksum(bytes(icmp)).to_bytes(2, "big")
    ip = bytearray(b"\x45\x00" + (20 + len(icmp)).to_bytes(2, "big") + b"\x00\x00\x40\x00"
                   + b"\x40\x01\x00\x00" + socket.inet_aton(src_ip) + socket.inet_aton(dst_ip))
    ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + bytes(ip) + bytes(icmp)


def tcp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int, dport: int,
              flags: str = "S", seq: int = 0, ack: int = 0) -> bytes:
    """An Ethernet/IPv4 TCP segment without options or payload, built by hand (scapy
    takes ~0.25 s of CPU per frame in the VM); checksums as the kernel checks them."""
    bits = sum(1 << TCP_FLAGS.index(f) for f in flags)
    tcp = bytearray(sport.to_bytes(2, "big") + dport.to_bytes(2, "big")
                    + seq.to_bytes(4, "big") + ack.to_bytes(4, "big")
                    + bytes([5 << 4, bits]) + (8192).to_bytes(2, "big") + b"\0\0\0\0")
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    pseudo = src + dst + b"\x00\x06" + len(tcp).to_bytes(2, "big")
    tcp[16:18] = checksum(pseudo + bytes(tcp)).to_bytes(2, "big")
    ip = bytearray(b"\x45\x00" + (20 + len(tcp)).to_bytes(2, "big") + b"\x00\x01\x00\x00"
                   + b"\x40\x06\x00\x00" + src + dst)
    ip[10:12] = checksum(bytes(ip)).to_bytes(2, "big")
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + b"\x08\x00" + bytes(ip) + bytes(tcp)


def parse_echo_reply(frame: bytes, ident: int) -> tuple[str, int] | None:
    """(source IP, seq) if ``frame`` is an ICMP echo reply with identifier ``ident``."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return None
    l4 = 14 + (frame[14] & 0x0F) * 4
    if frame[l4] != 0 or int.from_bytes(frame[l4 + 4:l4 + 6], "big") != ident:
        return None
    return socket.inet_ntoa(frame[26:30]), int.from_bytes(frame[l4 + 6:l4 + 8], "big")


# -- NDP --------------------------------------------------------------------

def solicitation(src_mac: str, src_ip: str, target: str) -> bytes:
    """A Neighbor Solicitation for ``target`` to its solicited-node group."""
    # lazy: scapy takes ~1 s to import (~10 s in the VM)
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import Ether

    t = ipaddress.IPv6Address(target).packed
    group = "ff02::1:ff" + t[13:14].hex() + ":" + t[14:16].hex()
    mac = "33:33:ff:" + mac_str(t[13:16])
    return bytes(Ether(src=src_mac, dst=mac) / IPv6(src=src_ip, dst=group, hlim=255)
                 / ICMPv6ND_NS(tgt=target) / ICMPv6NDOptSrcLLAddr(lladdr=src_mac))


def parse_advert(frame: bytes) -> tuple[str, str] | None:
    """(source MAC, target address) of a Neighbor Advertisement, else None."""
    if len(frame) < 78 or frame[12:14] != b"\x86\xdd" or frame[20] != 58 or frame[54] != 136:
        return None
    return mac_str(frame[6:12]), socket.inet_ntop(socket.AF_INET6, frame[62:78])

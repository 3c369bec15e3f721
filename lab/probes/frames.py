"""A minimal Ethernet/IPv4/IPv6/TCP/UDP/ARP decoder for the probes' own checks.

scapy decodes for humans (pcaps, reports); this decodes the few fields the
probes test, fast enough to run over every captured frame in the slow VM.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


def mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


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

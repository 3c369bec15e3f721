"""Addresses said briefly: runs of consecutive addresses as ranges, and the fewest
prefixes that cover exactly a set of addresses (a router's aggregate routes).

A note about 5,000 VIPs names one range, not 5,000 addresses (issue #27)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def runs(ips: Iterable[IP]) -> list[tuple[IP, IP]]:
    """The addresses (duplicates ignored) as runs of consecutive addresses, (first,
    last) each, IPv4 before IPv6, in order."""
    out: list[tuple[IP, IP]] = []
    for ip in sorted(set(ips), key=lambda a: (a.version, a)):
        if out and out[-1][1].version == ip.version and int(ip) == int(out[-1][1]) + 1:
            out[-1] = (out[-1][0], ip)
        else:
            out.append((ip, ip))
    return out


def summary(ips: Iterable[IP | str], limit: int = 8) -> str:
    """The addresses (objects or text) in words: each when there are at most ``limit``;
    else their runs (``198.18.0.1-198.18.19.136``), at most ``limit`` of them, and how
    many there are."""
    alls = sorted({ipaddress.ip_address(a) if isinstance(a, str) else a for a in ips},
                  key=lambda a: (a.version, a))
    if len(alls) <= limit:
        return ", ".join(map(str, alls))
    rs = runs(alls)
    shown = [str(a) if a == b else f"{a}-{b}" for a, b in rs[:limit]]
    more = f", ... ({len(rs) - limit} more ranges)" if len(rs) > limit else ""
    return f"{', '.join(shown)}{more} ({len(alls)} addresses)"


def aggregate(ips: Iterable[IP]) -> list[IPNet]:
    """The fewest prefixes that hold exactly ``ips``, no other address (IPv4 before
    IPv6): 198.18.0.0/24 for its 256 addresses, 198.18.0.1/32 and 198.18.0.2/31 for
    .1 to .3."""
    alls = set(ips)
    v4 = [ipaddress.IPv4Network(ip) for ip in alls if isinstance(ip, ipaddress.IPv4Address)]
    v6 = [ipaddress.IPv6Network(ip) for ip in alls if isinstance(ip, ipaddress.IPv6Address)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]

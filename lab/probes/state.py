"""What the kernel actually has in a lab host, read back over netlink.

Used by reports (``drlab demo``) and tests; it reads the kernel, not the model,
so a report shows what was really built.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from lab.builder import Lab


@dataclass
class IfaceState:
    name: str
    mac: str
    state: str
    mtu: int
    addresses: list[str] = field(default_factory=list)  # "ip/prefix"


def interfaces(lab: Lab, host: str) -> list[IfaceState]:
    ipr = lab.ipr(host)
    by_index: dict[int, IfaceState] = {}
    for link in ipr.get_links():
        by_index[link["index"]] = IfaceState(
            link.get("ifname"), link.get("address") or "", link.get("operstate") or "",
            link.get("mtu") or 0)
    for a in ipr.get_addr():
        st = by_index.get(a["index"])
        if st is not None:
            st.addresses.append(f"{a.get('address')}/{a['prefixlen']}")
    return list(by_index.values())


def routes(lab: Lab, host: str) -> list[str]:
    out = []
    for r in lab.ipr(host).get_routes(family=socket.AF_INET, table=254):
        dst = r.get("dst")
        dst = f"{dst}/{r['dst_len']}" if dst else "default"
        gw = r.get("gateway")
        out.append(f"{dst} via {gw}" if gw else f"{dst} (link)")
    return out


def neighbours(lab: Lab, host: str) -> dict[str, str]:
    """IPv4 and IPv6 neighbour tables: ip -> MAC (only entries with a link-layer
    address)."""
    out = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        for n in lab.ipr(host).get_neighbours(family=family):
            mac = n.get("lladdr")
            if mac:
                out[n.get("dst")] = mac
    return out

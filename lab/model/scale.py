"""Scale labs: one director with thousands of virtual services, as kube-proxy builds.

:func:`many_services` is the default DR lab (client, director, real servers on one
LAN) with ``n`` virtual services on consecutive VIPs from 198.18.0.1: RFC 2544's
benchmarking range (:data:`~lab.model.topology.SCALE_RANGE`), since 50,000
addresses do not fit the documentation ranges. The client reaches them all through
one aggregate route via the director, as a router would hold it, not one /32 per VIP.

Where the VIPs live (``holder``):

* ``lo``: on each real server's ``lo``, the classic DR way;
* ``dummy``: on NOARP dummy interfaces, as kube-proxy holds its service addresses
  on ``kube-ipvs0``; at most :data:`PER_DUMMY` addresses on each.

The director always holds its VIPs on such dummies. Why several: the kernel keeps
an interface's IPv4 addresses in a list that every new address walks to its end, so
the cost of adding one grows with the addresses already on that interface. Measured
on this project's build machine (kernel 6.18, one batched netlink request per 1,000
addresses): 11 µs per address for 1,000 on one interface, 905 µs for 50,000 on one
(45 s); 45 µs for 50,000 spread over interfaces of 1,000 each (2.3 s). ``auto`` (the
default) is ``lo`` up to :data:`LO_LIMIT` services, ``dummy`` above.

Nothing here touches the system.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from lab.errors import TopologyError
from lab.model.defaults import LAN, RS_ARP_SYSCTLS, rs_ip
from lab.model.topology import (
    SCALE_RANGE,
    SCALE_RANGE_WAIVER,
    Address,
    Host,
    Interface,
    RealServer,
    Route,
    Segment,
    Topology,
    VirtualService,
)

Holder = Literal["auto", "lo", "dummy"]
HOLDERS: tuple[str, ...] = ("auto", "lo", "dummy")
#: The first VIP of a scale lab.
FIRST_VIP = ipaddress.IPv4Address("198.18.0.1")
#: The most services a scale lab holds (the rest of 198.18.0.0/15 after .0.0).
MAX_SERVICES = SCALE_RANGE.num_addresses - 2
#: ``auto`` keeps the VIPs on lo up to this many services.
LO_LIMIT = 1024
#: Addresses per VIP-holding dummy (the kernel's per-interface list stays short).
PER_DUMMY = 1000
#: A lab with more services than this is checked by sample (``drlab check --sample``).
SAMPLE_ABOVE = 64


def vip(n: int) -> str:
    """The VIP of service ``n`` (0-based): 198.18.0.1, 198.18.0.2, ..."""
    return str(FIRST_VIP + n)


def aggregate(first: str, last: str) -> str:
    """The smallest prefix covering ``first`` .. ``last`` (the client's one route)."""
    a, b = ipaddress.IPv4Address(first), ipaddress.IPv4Address(last)
    for plen in range(32, -1, -1):
        net = ipaddress.IPv4Network(f"{a}/{plen}", strict=False)
        if b in net:
            return str(net)
    raise AssertionError("unreachable: /0 covers every address")  # pragma: no cover


def holder_of(n: int, holder: Holder) -> Literal["lo", "dummy"]:
    """What ``auto`` means for ``n`` services."""
    if holder == "auto":
        return "lo" if n <= LO_LIMIT else "dummy"
    return holder


def _dummies(vips: list[Address]) -> list[Interface]:
    return [Interface(f"vips{k}", "", vips[i:i + PER_DUMMY], kind="dummy")
            for k, i in enumerate(range(0, len(vips), PER_DUMMY))]


def many_services(n: int, *, rs: int = 2, holder: Holder = "auto", port: int = 80,
                  scheduler: str = "rr", name: str | None = None) -> Topology:
    """The default DR lab with ``n`` virtual services on consecutive VIPs (see the
    module's doc); every service balances over every real server."""
    if not 1 <= n <= MAX_SERVICES:
        raise TopologyError(f"services={n}: a scale lab holds 1..{MAX_SERVICES:,} "
                            f"(198.18.0.0/15)")
    if not 1 <= rs <= 64:
        raise TopologyError(f"rs={rs}: a scale lab takes 1..64 real servers")
    if holder not in HOLDERS:
        raise TopologyError(f"holder {holder!r}: one of {', '.join(HOLDERS)}")
    where = holder_of(n, holder)
    vips = [vip(i) for i in range(n)]
    held = [Address(f"{v}/32") for v in vips]
    hosts = [
        Host("client", "client", [Interface("eth0", "lan", [Address(f"{LAN}.10/24")])],
             routes=[Route(aggregate(vips[0], vips[-1]), f"{LAN}.2")]),
        Host("director", "director", [Interface("eth0", "lan", [Address(f"{LAN}.2/24")])],
             dummies=_dummies(held)),
    ]
    for k in range(1, rs + 1):
        hosts.append(Host(
            f"rs{k}", "realserver", [Interface("eth0", "lan", [Address(f"{rs_ip(k)}/24")])],
            lo=list(held) if where == "lo" else [],
            dummies=_dummies(held) if where == "dummy" else [],
            sysctls=dict(RS_ARP_SYSCTLS)))
    services = [VirtualService(v, port, "director",
                               [RealServer(f"rs{k}") for k in range(1, rs + 1)],
                               scheduler=scheduler) for v in vips]
    return Topology(name or f"dr-{n}-services", hosts, [Segment("lan")], services,
                    waive=frozenset({SCALE_RANGE_WAIVER}))

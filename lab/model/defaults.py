"""The topologies the lab ships.

``default_dr()``: client, director, rs1..rsN on one LAN segment.
``default_dr(behind_router=True)``: the client sits on its own segment behind a
router, the usual production path.

Addresses (all documentation ranges)::

    LAN  192.0.2.0/24     router .1  director .2  client .10  VIP .100  rsN .(100+N)
    WAN  198.51.100.0/24  router .1  client .10          (behind_router only)
"""

from __future__ import annotations

from collections.abc import Mapping

from lab.errors import TopologyError
from lab.model.topology import (
    Address,
    Host,
    Interface,
    Protocol,
    RealServer,
    Route,
    Segment,
    Topology,
    VirtualService,
)

LAN = "192.0.2"
WAN = "198.51.100"
VIP = f"{LAN}.100"
PORT = 80
MAX_REAL_SERVERS = 150

#: What a correctly configured DR real server has: answer ARP only for
#: addresses on the receiving interface, and announce the best local
#: address of the outgoing subnet (the RIP, never the VIP).
RS_ARP_SYSCTLS = {
    "net.ipv4.conf.all.arp_ignore": "1",
    "net.ipv4.conf.all.arp_announce": "2",
    "net.ipv4.conf.eth0.arp_ignore": "1",
    "net.ipv4.conf.eth0.arp_announce": "2",
}


def rs_ip(n: int) -> str:
    return f"{LAN}.{100 + n}"


def default_dr(
    rs: int = 2,
    *,
    scheduler: str = "rr",
    port: int = PORT,
    protocol: Protocol = "tcp",
    weights: Mapping[str, int] | None = None,
    persistence: int | None = None,
    behind_router: bool = False,
    rs_sysctls: Mapping[str, object] | None = None,
    host_sysctls: Mapping[str, Mapping[str, object]] | None = None,
    rs_without_vip: tuple[str, ...] = (),
    client_addresses: int = 1,
    fwmark: int | None = None,
    extra_ports: tuple[int, ...] = (),
    ipv6: bool = False,
    name: str | None = None,
) -> Topology:
    """Build the default DR topology.

    ``rs_sysctls`` is applied to every real server on top of
    :data:`RS_ARP_SYSCTLS`; ``host_sysctls`` maps a host name to extra
    sysctls for that host only (applied last). ``rs_without_vip`` names real
    servers that do not get the VIP on ``lo`` (a classic misconfiguration).
    ``client_addresses`` gives the client more source addresses (for
    source-hashing schedulers): .10, .11, ... on the client's subnet.
    """
    if not 1 <= client_addresses <= 80:
        raise TopologyError(f"client_addresses={client_addresses}: 1..80")
    if not 1 <= rs <= MAX_REAL_SERVERS:
        raise TopologyError(f"rs={rs}: the default topology takes 1..{MAX_REAL_SERVERS} "
                            "real servers")
    weights = dict(weights or {})
    host_sysctls = {k: dict(v) for k, v in (host_sysctls or {}).items()}
    gw = [Route("default", f"{LAN}.1")] if behind_router else []
    hosts: list[Host] = []
    segments = [Segment("lan")]

    if behind_router:
        segments.append(Segment("wan"))
        hosts.append(Host(
            "client", "client",
            [Interface("eth0", "wan", [Address(f"{WAN}.{10 + i}/24")
                                       for i in range(client_addresses)])],
            routes=[Route("default", f"{WAN}.1")],
        ))
        hosts.append(Host(
            "router", "router",
            [Interface("eth0", "lan", [Address(f"{LAN}.1/24")]),
             Interface("eth1", "wan", [Address(f"{WAN}.1/24")])],
            sysctls={"net.ipv4.conf.all.forwarding": "1"},
        ))
    else:
        hosts.append(Host("client", "client",
                          [Interface("eth0", "lan", [Address(f"{LAN}.{10 + i}/24")
                                                     for i in range(client_addresses)])]))

    hosts.append(Host(
        "director", "director",
        [Interface("eth0", "lan", [Address(f"{LAN}.2/24"), Address(f"{VIP}/32")])],
        routes=list(gw),
    ))
    rss: list[RealServer] = []
    for n in range(1, rs + 1):
        name_n = f"rs{n}"
        sysctls = {**RS_ARP_SYSCTLS, **{k: str(v) for k, v in (rs_sysctls or {}).items()}}
        hosts.append(Host(
            name_n, "realserver",
            [Interface("eth0", "lan", [Address(f"{rs_ip(n)}/24")])],
            lo=[] if name_n in rs_without_vip else [Address(f"{VIP}/32")],
            routes=list(gw),
            sysctls=sysctls,
        ))
        rss.append(RealServer(name_n, weights.get(name_n, 1)))

    for h in hosts:
        h.sysctls.update({k: str(v) for k, v in host_sysctls.pop(h.name, {}).items()})
    if host_sysctls:
        raise TopologyError(f"host_sysctls names unknown hosts: {', '.join(sorted(host_sysctls))}")

    svc = VirtualService(VIP, port, "director", rss, protocol=protocol,
                         scheduler=scheduler, persistence=persistence, fwmark=fwmark,
                         extra_ports=list(extra_ports))
    topo_name = name or ("dr-router" if behind_router else "dr")
    t = Topology(topo_name, hosts, segments, [svc])
    return to_ipv6(t) if ipv6 else t


def v6(addr: str) -> str:
    """The IPv6 twin of a lab IPv4 address or prefix: 192.0.2.N -> 2001:db8::N,
    198.51.100.N -> 2001:db8:1::N (the same last number, written in decimal)."""
    ip, slash, plen = addr.partition("/")
    a, b, c, d = ip.split(".")
    net = {"192.0.2": "2001:db8:", "198.51.100": "2001:db8:1:"}[f"{a}.{b}.{c}"]
    new_plen = {"24": "64", "32": "128"}.get(plen, plen)
    return f"{net}:{d}" + (f"/{new_plen}" if slash else "")


def to_ipv6(t: Topology) -> Topology:
    """The same lab on IPv6 only: every address and route mapped with :func:`v6`."""
    for h in t.hosts:
        for i in h.interfaces:
            i.addresses = [Address(v6(a.cidr), a.scope) for a in i.addresses]
        h.lo = [Address(v6(a.cidr), a.scope) for a in h.lo]
        h.routes = [Route(r.dst if r.dst == "default" else v6(r.dst),
                          v6(r.via) if r.via else None, r.dev) for r in h.routes]
        if h.role == "router":
            h.sysctls["net.ipv6.conf.all.forwarding"] = "1"
    if t.service is not None:
        t.service.vip = v6(t.service.vip)
    t.name += "-v6"
    return t

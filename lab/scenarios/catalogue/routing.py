"""Routing and delivery: where DR packets go, and where they are dropped."""

from __future__ import annotations

import errno
import time

from lab.builder import Lab
from lab.model import Address, Interface, Route, Segment, Topology, default_dr
from lab.probes.capture import Capture
from lab.probes.counters import rising
from lab.roles import client, director, realserver
from lab.scenarios.base import Outcome, Scenario, Variant, register
from lab.util import Timeout, wait_for
from lab.wire.frames import decode
from lab.wire.packet import Frame, packet_socket


def _missing_vip(lab: Lab, variant: Variant) -> Outcome:
    rss = [h.name for h in lab.topology.real_servers]
    drops = rising(lab, "Ip.InAddrErrors", rss)
    socks = [client.start_connect(lab) for _ in range(len(rss))]
    try:
        def settled() -> tuple[list[str]] | None:
            # a tuple: "settled, nothing dropped" ([]) must end the wait too
            dropped = sorted(drops())
            done = sum(client.connected(s) for s in socks)
            return (dropped,) if done + len(dropped) >= len(socks) else None
        try:
            dropped = wait_for(settled, 5, "every request to be answered or dropped")[0]
        except Timeout:
            dropped = sorted(drops())
        ok = sum(client.connected(s) for s in socks)
    finally:
        for s in socks:
            s.close()
    conns = director.read_connections(lab)
    ev = [f"{ok} of {len(socks)} connections completed"]
    ev += [f"{h}: Ip.InAddrErrors rose (the request for the VIP was dropped)" for h in dropped]
    ev.append("IPVS connections: " + ", ".join(f"{c.client}:{c.cport}->{c.dest} {c.state}"
                                               for c in conns))
    return Outcome(bool(dropped) and ok < len(socks), ev)


register(Scenario(
    name="missing-vip-on-rs",
    symptom="some connections time out; IPVS shows them scheduled to a real server",
    trigger="a real server without the VIP on lo: it drops what the director forwards "
            "(Ip.InAddrErrors)",
    fix="add the VIP /32 on the real server's lo",
    broken=lambda: default_dr(rs_without_vip=("rs2",)),
    fixed=lambda: default_dr(),
    observe=_missing_vip,
    source="LVS-HOWTO, LVS-DR real servers (the VIP on lo)",
))


def _stale_vip(lab: Lab, variant: Variant) -> Outcome:
    svc = lab.topology.service
    assert svc is not None
    ev = []
    with Capture(lab, "client") as cap:
        t0 = time.monotonic()
        try:
            r = client.connect(lab, timeout=3)
            ev.append(f"connect to VIP answered by {r.server} in {r.seconds * 1000:.1f} ms")
            refused = False
        except client.ConnectError as e:
            refused = e.errno == errno.ECONNREFUSED
            ev.append(f"connect to VIP failed in {(time.monotonic() - t0) * 1000:.1f} ms: {e}")
    on_wire = [f for f in cap.frames if f.outgoing]
    ev.append(f"{len(on_wire)} frames left the client")
    symptom = refused and not on_wire
    if symptom:  # with a local listener it silently talks to itself
        realserver.start_service(lab, "client")
        r = client.connect(lab)
        ev.append(f"with a local listener the 'VIP' is served by {r.server}")
    return Outcome(symptom, ev)


def _client_with_vip() -> Topology:
    t = default_dr()
    t.host("client").lo = [Address("192.0.2.100/32")]
    return t


register(Scenario(
    name="stale-vip-on-lo",
    symptom="a host that stopped serving can no longer reach the service: immediate "
            "ECONNREFUSED and no frame on the wire; with a local listener it talks to itself",
    trigger="the VIP left on lo after the host left the pool: every local connection to it "
            "stays local",
    fix="remove the VIP from lo when a host stops being a real server",
    broken=_client_with_vip,
    fixed=lambda: default_dr(),
    observe=_stale_vip,
    source="LVS-HOWTO, real servers leaving the pool (local delivery of a local VIP)",
))


def _multihomed(rp: int) -> Topology:
    t = default_dr(rs=1, behind_router=True)
    t.segments.append(Segment("mgmt"))
    t.host("router").interfaces.append(Interface("eth2", "mgmt", [Address("203.0.113.1/24")]))
    rs = t.host("rs1")
    rs.interfaces.append(Interface("eth1", "mgmt", [Address("203.0.113.101/24")]))
    rs.routes = [Route("default", "203.0.113.1")]  # back to clients by the other interface
    rs.sysctls.update({"net.ipv4.conf.all.rp_filter": str(rp),
                       "net.ipv4.conf.eth0.rp_filter": str(rp)})
    return t


def _rp_filter(lab: Lab, variant: Variant) -> Outcome:
    rp_drops = rising(lab, "TcpExt.IPReversePathFilter", ["rs1"])
    try:
        r = client.connect(lab, timeout=2)
        ok, ev = True, [f"connection served by {r.server} (reply left by eth1 via the router)"]
    except client.ConnectError as e:
        ok, ev = False, [f"connection failed: {e}"]
    rose = rp_drops().get("rs1", 0)
    ev.append(f"rs1 TcpExt.IPReversePathFilter +{rose}")
    return Outcome(not ok and rose > 0, ev)


register(Scenario(
    name="rp-filter-multihomed",
    symptom="a multi-homed real server drops every DR request",
    trigger="strict rp_filter (1) while its route back to the client uses another interface "
            "(TcpExtIPReversePathFilter rises)",
    fix="loose rp_filter (2) on that real server",
    broken=lambda: _multihomed(1),
    fixed=lambda: _multihomed(2),
    observe=_rp_filter,
    stimulus="replies by another interface, which check's path proof does not follow",
    source="Documentation/networking/ip-sysctl.rst (rp_filter)",
))


def _not_on_link(far: bool) -> Topology:
    t = default_dr(rs=2, behind_router=True)
    if far:
        t.segments.append(Segment("far"))
        t.host("router").interfaces.append(Interface("eth2", "far",
                                                     [Address("203.0.113.1/24")]))
        rs2 = t.host("rs2")
        rs2.interfaces = [Interface("eth0", "far", [Address("203.0.113.102/24")])]
        rs2.routes = [Route("default", "203.0.113.1")]
        t.host("director").routes.append(Route("203.0.113.0/24", "192.0.2.1"))
    return t


def _not_on_link_observe(lab: Lab, variant: Variant) -> Outcome:
    svc = lab.topology.service
    assert svc is not None
    served: list[str] = []
    failed: list[str] = []
    with Capture(lab, "rs2") as cap:
        for _ in range(4):
            try:
                served.append(client.connect(lab, timeout=1).server)
            except client.ConnectError as e:
                failed.append(str(e))

    got = [x for f in cap.frames if not f.outgoing and (x := decode(f.data)).dst == svc.vip]
    ev = [f"served by {served}, {len(failed)} failed" + (f" ({'; '.join(failed)})" if failed
                                                           else ""),
          f"rs2 received {len(got)} frames addressed to the VIP"]
    return Outcome(bool(failed) and not got, ev)


register(Scenario(
    name="rs-not-on-link",
    symptom="connections scheduled to one real server all fail; it never sees them",
    trigger="the real server is reached through a router: DR only rewrites the MAC, so the "
            "real server must share the director's L2 segment",
    fix="put every DR real server on the director's segment (or use tunnel mode)",
    broken=lambda: _not_on_link(True),
    fixed=lambda: _not_on_link(False),
    observe=_not_on_link_observe,
    source=("LVS-HOWTO, LVS-DR (director and real servers on one L2 segment); "
            "net/netfilter/ipvs/ip_vs_xmit.c"),
))


def _mtu_topology(rs_mtu: int) -> Topology:
    t = default_dr(rs=1, behind_router=True)
    t.segments.append(Segment("rsnet"))
    d = t.host("director")
    d.interfaces.append(Interface("eth1", "rsnet", [Address("203.0.113.2/24")], mtu=rs_mtu))
    t.host("router").interfaces.append(Interface("eth2", "rsnet", [Address("203.0.113.1/24")],
                                                 mtu=rs_mtu))
    rs = t.host("rs1")
    rs.interfaces = [Interface("eth0", "rsnet", [Address("203.0.113.101/24")], mtu=rs_mtu)]
    rs.routes = [Route("default", "203.0.113.1")]
    return t


def _mtu(lab: Lab, variant: Variant) -> Outcome:
    """Send a 1450-byte DF segment to the VIP; IPVS checks it against the route to the
    real server and answers with ICMP fragmentation-needed when it does not fit."""
    # lazy: scapy takes ~1 s to import (~10 s in the VM)
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether


    svc = lab.topology.service
    assert svc is not None
    client.connect(lab)  # the client resolves its gateway
    cip = lab.topology.primary_ip("client")
    frame = bytes(Ether(src=lab.mac("client"), dst=lab.mac("router", "eth1"))
                  / IP(src=cip, dst=svc.vip, flags="DF")
                  / TCP(sport=33333, dport=svc.port, flags="S") / (b"x" * 1410))
    with Capture(lab, "client") as cap:
        s = packet_socket(lab, "client", "eth0")
        try:
            s.send(frame)
        finally:
            s.close()

        def icmp() -> list[Frame]:
            cap.poll()
            return [f for f in cap.frames if not f.outgoing and decode(f.data).proto == 1
                    and f.data[34] == 3 and f.data[35] == 4]
        try:
            got = wait_for(icmp, 2, "ICMP fragmentation-needed")
        except Timeout:
            got = []
    ev = [f"1450-byte DF SYN from the client to {svc.vip}:{svc.port}"]
    for f in got:
        x = decode(f.data)
        mtu = int.from_bytes(f.data[40:42], "big")
        ev.append(f"ICMP fragmentation-needed from {x.src}, next-hop MTU {mtu}")
    if not got:
        ev.append("no ICMP fragmentation-needed came back")
    return Outcome(bool(got), ev)


register(Scenario(
    name="dr-mtu",
    symptom="large packets to the VIP fail: the director answers ICMP fragmentation-needed "
            "(or, where ICMP is filtered, they vanish)",
    trigger="a smaller MTU on the real servers' side than on the clients' side: IPVS checks "
            "the forwarded packet against the route to the real server",
    fix="the same MTU on both sides (or clamp the MSS)",
    broken=lambda: _mtu_topology(1400),
    fixed=lambda: _mtu_topology(1500),
    observe=_mtu,
    stimulus="a 1450-byte DF segment to the VIP",
    source="net/netfilter/ipvs/ip_vs_xmit.c (ensure_mtu_is_adequate)",
))

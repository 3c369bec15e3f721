"""The catalogue: every known LVS-DR failure, reproducible by name.

Each entry builds a *broken* and a *fixed* lab and observes the symptom from
packets and kernel counters. The README's catalogue table is generated from
this registry (``drlab scenarios --markdown``), so it cannot drift.
"""

from __future__ import annotations

import contextlib
import errno
import time

from lab.builder import Lab
from lab.model import Address, Interface, Route, Segment, Topology, default_dr
from lab.model.predict import RsConfig, topology_for
from lab.probes import arp
from lab.probes.arpcheck import measure
from lab.probes.capture import Capture
from lab.probes.counters import counter
from lab.roles import client, director, realserver
from lab.scenarios.base import Outcome, Scenario, Variant
from lab.util import Timeout, scaled, wait_for
from lab.wire.frames import parse_arp

IGNORE0 = {"net.ipv4.conf.all.arp_ignore": "0", "net.ipv4.conf.eth0.arp_ignore": "0"}
ANNOUNCE0 = {"net.ipv4.conf.all.arp_announce": "0", "net.ipv4.conf.eth0.arp_announce": "0"}
ANNOUNCE1 = {"net.ipv4.conf.all.arp_announce": "1", "net.ipv4.conf.eth0.arp_announce": "1"}

REGISTRY: dict[str, Scenario] = {}


def register(s: Scenario) -> Scenario:
    REGISTRY[s.name] = s
    return s


def _rs_in_census(lab: Lab, variant: Variant) -> Outcome:
    c = arp.census(lab)
    rss = sorted(c.hosts & {h.name for h in lab.topology.real_servers})
    return Outcome(bool(rss), [str(c)] + [f"{h} answers who-has VIP: clients can resolve the "
                                          "VIP to it and bypass the director" for h in rss])


# 1 ---------------------------------------------------------------------------
register(Scenario(
    name="rs-answers-arp",
    symptom="a real server answers who-has VIP; clients or the router may send to it directly, "
            "bypassing the director",
    trigger="arp_ignore=0 (the kernel default) on a real server holding the VIP on lo",
    fix="net.ipv4.conf.all.arp_ignore=1 (and on the LAN interface)",
    broken=lambda: default_dr(host_sysctls={"rs1": IGNORE0}),
    fixed=lambda: default_dr(),
    observe=_rs_in_census,
    needs_ipvs=False, services=False,
))

# 2 ---------------------------------------------------------------------------
register(Scenario(
    name="sysctls-on-lo-only",
    symptom="arp_ignore/arp_announce were 'set' but real servers still answer ARP for the VIP",
    trigger="the knobs written only on lo; ARP on eth0 consults eth0 and all, never lo",
    fix="set them on all (and the LAN interface)",
    broken=lambda: default_dr(rs_sysctls={
        **IGNORE0, **ANNOUNCE0, "net.ipv4.conf.lo.arp_ignore": "1",
        "net.ipv4.conf.lo.arp_announce": "2"}),
    fixed=lambda: default_dr(),
    observe=_rs_in_census,
    needs_ipvs=False, services=False,
))


# 3 ---------------------------------------------------------------------------
def _only(lab: Lab, rs: str) -> None:
    """Weight 1 for ``rs``, 0 for every other real server (ipvsadm -e)."""
    for h in lab.topology.real_servers:
        director.set_weight(lab, h.name, 1 if h.name == rs else 0)


def _poisoning(lab: Lab, variant: Variant) -> Outcome:
    vip = lab.topology.service.vip  # type: ignore[union-attr]
    ev = []
    symptom = False
    for rs in ("rs1", "rs2"):  # one at a time: a poisoned client would never reach the other
        _only(lab, rs)
        arp.flush_neighbours(lab, "client")
        client.connect(lab)
        before = arp.resolves_to(lab, "client", vip)
        ann = arp.announcements(lab, rs)
        after = arp.resolves_to(lab, "client", vip)
        ev.append(f"{rs} asked with sender {sorted(ann.senders)}; client's VIP entry "
                  f"{before} -> {after}")
        if after == rs:
            symptom = True
            _only(lab, "rs2" if rs == "rs1" else "rs1")
            servers = sorted({client.connect(lab).server for _ in range(3)})
            ev.append(f"with {rs} drained in IPVS, 3 more connections were still served by "
                      f"{servers}: the director is bypassed")
    return Outcome(symptom, ev)


register(Scenario(
    name="arp-announce-poisoning",
    symptom="clients' neighbour entry for the VIP moves to a real server; later connections "
            "skip the director",
    trigger="arp_announce=0 (rs1), or =1 with the VIP inside the LAN prefix (rs2): the real "
            "server's ARP requests say 'tell VIP'",
    fix="net.ipv4.conf.all.arp_announce=2",
    broken=lambda: default_dr(host_sysctls={"rs1": ANNOUNCE0, "rs2": ANNOUNCE1}),
    fixed=lambda: default_dr(),
    observe=_poisoning,
))


# 4 ---------------------------------------------------------------------------
def _missing_vip(lab: Lab, variant: Variant) -> Outcome:
    rss = [h.name for h in lab.topology.real_servers]
    before = {h: counter(lab, h, "Ip.InAddrErrors") for h in rss}
    socks = [client.start_connect(lab) for _ in range(len(rss))]
    try:
        def settled() -> list[str] | None:
            dropped = [h for h in rss if counter(lab, h, "Ip.InAddrErrors") > before[h]]
            done = sum(client.connected(s) for s in socks)
            return dropped if done + len(dropped) >= len(socks) else None
        try:
            dropped = wait_for(settled, 5, "every request to be answered or dropped")
        except Timeout:
            dropped = [h for h in rss if counter(lab, h, "Ip.InAddrErrors") > before[h]]
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
))


# 5 ---------------------------------------------------------------------------
def _wide_prefix(lab: Lab, variant: Variant) -> Outcome:
    o = measure(lab)
    c = arp.census(lab, "192.0.2.250")  # an address nobody holds
    return Outcome(not o.dr_works, o.evidence + [str(c)] + (
        ["rs1 answers ARP for an address it does not hold: the whole /24 is local"]
        if "rs1" in c.hosts else []))


register(Scenario(
    name="vip-wide-prefix-on-lo",
    symptom="the real server cannot reach clients; with arp_ignore=0 it answers ARP for every "
            "address of the prefix",
    trigger="VIP/24 on lo instead of /32: lo makes the whole prefix local",
    fix="VIP/32 on lo",
    broken=lambda: topology_for(RsConfig(vip_place="lo-wide", arp_ignore=0, arp_announce=0)),
    fixed=lambda: topology_for(RsConfig()),
    observe=_wide_prefix,
    needs_ipvs=False,
))


# 6 ---------------------------------------------------------------------------
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
))


# 7 ---------------------------------------------------------------------------
def _vip_on_lan(ignores: tuple[int, ...] = (1, 2, 3)) -> Topology:
    t = default_dr(rs=len(ignores))
    for n, ign in enumerate(ignores, 1):
        rs = t.host(f"rs{n}")
        rs.sysctls.update({"net.ipv4.conf.all.arp_ignore": str(ign),
                           "net.ipv4.conf.eth0.arp_ignore": str(ign)})
        rs.lo = []
        rs.interfaces[0].addresses.append(Address("192.0.2.100/32"))
    t.waive = frozenset({"vip-duplicate"})
    return t


register(Scenario(
    name="vip-on-lan-interface",
    symptom="real servers answer ARP for the VIP although arp_ignore is 1, 2 or 3",
    trigger="the VIP on the real server's LAN interface: it is on the receiving interface",
    fix="put the VIP on lo (with arp_ignore=1)",
    broken=_vip_on_lan,
    fixed=lambda: default_dr(rs=3),
    observe=_rs_in_census,
    needs_ipvs=False, services=False,
))


# 8 ---------------------------------------------------------------------------
def _ignore3(scope: str) -> Topology:
    t = default_dr(rs=1, rs_sysctls={"net.ipv4.conf.all.arp_ignore": "3",
                                     "net.ipv4.conf.eth0.arp_ignore": "3"})
    t.host("rs1").lo = [Address("192.0.2.100/32", scope)]  # type: ignore[arg-type]
    return t


register(Scenario(
    name="arp-ignore-3-scope",
    symptom="with arp_ignore=3 the real server still answers ARP for the VIP",
    trigger="arp_ignore=3 only ignores scope-host addresses; iproute2 adds a VIP on lo with "
            "scope global",
    fix="add the VIP with `scope host` (or use arp_ignore=1)",
    broken=lambda: _ignore3("global"),
    fixed=lambda: _ignore3("host"),
    observe=_rs_in_census,
    needs_ipvs=False, services=False,
))


# 9 ---------------------------------------------------------------------------
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
    before = counter(lab, "rs1", "TcpExt.IPReversePathFilter")
    try:
        r = client.connect(lab, timeout=2)
        ok, ev = True, [f"connection served by {r.server} (reply left by eth1 via the router)"]
    except client.ConnectError as e:
        ok, ev = False, [f"connection failed: {e}"]
    rose = counter(lab, "rs1", "TcpExt.IPReversePathFilter") - before
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
))


# 10 --------------------------------------------------------------------------
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
    from lab.wire.frames import decode

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
))


# 11 --------------------------------------------------------------------------
def _director_vip_primary(vip_first: bool) -> Topology:
    t = default_dr()
    d = t.host("director").interfaces[0]
    d.addresses = ([Address("192.0.2.100/24"), Address("192.0.2.2/24")] if vip_first
                   else [Address("192.0.2.2/24"), Address("192.0.2.100/32")])
    return t


def _director_arps(lab: Lab, variant: Variant) -> Outcome:
    vip = lab.topology.service.vip  # type: ignore[union-attr]
    failed = 0
    with Capture(lab, "director") as cap:
        for _ in range(2):
            try:
                client.connect(lab, timeout=1.5)
            except client.ConnectError:
                failed += 1
    senders = sorted({a.psrc for f in cap.frames if f.outgoing and (a := parse_arp(f.data))
                      and a.op == 1})
    ev = [f"director's ARP requests say tell {senders}", f"{failed} of 2 connections failed"]
    return Outcome(vip in senders and failed > 0, ev)


register(Scenario(
    name="director-vip-primary",
    symptom="nothing works through the director; it keeps ARPing for the real servers",
    trigger="the director got VIP/24 before its own address: the VIP is the primary, its ARP "
            "requests say 'tell VIP', and real servers holding the VIP drop them as martians",
    fix="add the VIP as /32 (or after the director's own address)",
    broken=lambda: _director_vip_primary(True),
    fixed=lambda: _director_vip_primary(False),
    observe=_director_arps,
))


# 12, 15 ----------------------------------------------------------------------
def _take_out(lab: Lab, how: str, expire_nodest: int = 0) -> Outcome:
    """Open a connection, take its real server out (``weight0`` or ``delete``), then
    check the established connection and where new ones go."""
    from lab.builder import sysctl

    svc = lab.topology.service
    assert svc is not None
    sysctl.write(lab.ns("director"), [("net.ipv4.vs.expire_nodest_conn", str(expire_nodest))])
    reply, s = client.open_connection(lab)
    if how == "weight0":
        director.set_weight(lab, reply.server, 0)
    else:
        director.remove_dest(lab, reply.server)
    ev = [f"connection to {reply.server}, then {how} (expire_nodest_conn={expire_nodest})"]
    s.settimeout(scaled(1.5))
    t0 = time.monotonic()
    try:
        s.sendall(b"still there?\n")
        echoed = s.recv(100)
        alive = echoed.startswith(b"still there?")
        ev.append("the established connection still answers" if alive else
                  f"the established connection got {echoed!r}")
    except TimeoutError:
        alive = False
        ev.append(f"the established connection hangs: no answer in {scaled(1.5):.1f}s")
    except OSError as e:
        alive = False
        ev.append(f"the established connection failed after "
                  f"{(time.monotonic() - t0) * 1000:.0f} ms: {e}")
    finally:
        s.close()
    new = sorted({client.connect(lab).server for _ in range(3)})
    ev.append(f"new connections served by {new}")
    return Outcome(not alive, ev)


register(Scenario(
    name="weight-zero-drain",
    symptom="taking a real server out cuts its established connections",
    trigger="deleting the real server (ipvsadm -d): IPVS drops the packets of its connections",
    fix="drain it first with weight 0 (ipvsadm -e ... -w 0): no new connections, established "
        "ones go on",
    broken=lambda: default_dr(),
    fixed=lambda: default_dr(),
    observe=lambda lab, v: _take_out(lab, "delete" if v == "broken" else "weight0"),
))


def _expire_nodest(lab: Lab, variant: Variant) -> Outcome:
    o = _take_out(lab, "delete", expire_nodest=0 if variant == "broken" else 1)
    # the symptom here is the silent hang; a quick error (reset) is the fix
    hang = any("hangs" in e for e in o.evidence)
    return Outcome(hang, o.evidence)


register(Scenario(
    name="expire-nodest-conn",
    symptom="clients of a deleted real server hang until their own timeouts",
    trigger="net.ipv4.vs.expire_nodest_conn=0: IPVS silently drops packets of connections "
            "whose real server is gone",
    fix="net.ipv4.vs.expire_nodest_conn=1: the entry expires and the next packet is "
        "rescheduled (the new real server resets it, so the client learns at once)",
    broken=lambda: default_dr(),
    fixed=lambda: default_dr(),
    observe=_expire_nodest,
))


# 13 --------------------------------------------------------------------------
def _persistence(lab: Lab, variant: Variant) -> Outcome:
    from lab.builder import sysctl

    servers = [client.connect(lab).server for _ in range(4)]
    ev = [f"4 connections from one client served by {servers}"]
    if variant == "fixed" and len(set(servers)) == 1:
        # drain the client's server: the persistence template still points at it
        sticky = servers[0]
        director.set_weight(lab, sticky, 0)
        for eqt in ("0", "1"):
            sysctl.write(lab.ns("director"),
                         [("net.ipv4.vs.expire_quiescent_template", eqt)])
            now = client.connect(lab).server
            ev.append(f"{sticky} at weight 0, expire_quiescent_template={eqt}: next connection "
                      f"served by {now}")
    return Outcome(len(set(servers)) > 1, ev)


register(Scenario(
    name="persistence",
    symptom="one client's connections land on different real servers (sessions break)",
    trigger="a service without persistence: every connection is scheduled on its own",
    fix="ipvsadm -A ... -p TIMEOUT: a template keeps each client on one real server (drained "
        "with weight 0, it keeps getting that client unless expire_quiescent_template=1)",
    broken=lambda: default_dr(),
    fixed=lambda: default_dr(persistence=60),
    observe=_persistence,
))


# 14 --------------------------------------------------------------------------
def _reuse_delay(lab: Lab, variant: Variant) -> Outcome:
    """Reconnect from the same source port while IPVS still holds the old connection.

    A DR director sees only the client's half of the close, so the entry sits in
    FIN_WAIT: conn_reuse_mode bit 1 covers TIME_WAIT only, bit 2 adds FIN_WAIT for
    DR/tunnel (so mode 3). IPVS then expires the entry and schedules anew; when
    the old connection was tracked by conntrack it drops the new SYN instead, and
    the client retries after 1 s."""
    from lab.builder import sysctl
    from lab.probes.ipvscheck import reconnect_same_port, use_conntrack

    conntrack = "1" if variant == "broken" else "0"
    # conntrack in use in the director's namespace in both variants; only
    # net.ipv4.vs.conntrack differs
    use_conntrack(lab)
    sysctl.write(lab.ns("director"), [("net.ipv4.vs.conn_reuse_mode", "3"),
                                      ("net.ipv4.vs.conntrack", conntrack)])
    port, delays, states = reconnect_same_port(lab)
    ev = [f"conn_reuse_mode=3 conntrack={conntrack}: connect from port {port} took "
          f"{delays[0] * 1000:.0f} ms, again from the same port {delays[1] * 1000:.0f} ms "
          f"(IPVS entries for the port: {', '.join(states)})"]
    return Outcome(delays[1] > 0.5, ev)


register(Scenario(
    name="conn-reuse-delay",
    symptom="a client reusing a source port waits about 1 s for its connection",
    trigger="net.ipv4.vs.conn_reuse_mode=3 (bit 2 makes a DR entry in FIN_WAIT reusable) with "
            "net.ipv4.vs.conntrack=1: the reused connection's first SYN is dropped "
            "(kernel-version dependent; measured, not assumed)",
    fix="net.ipv4.vs.conntrack=0 where conntrack is not needed (kernels >= 5.9 then reschedule "
        "without the delay)",
    broken=lambda: default_dr(rs=1),
    fixed=lambda: default_dr(rs=1),
    observe=_reuse_delay,
))


# 16 --------------------------------------------------------------------------
@contextlib.contextmanager
def _host_rp_filter(variant: Variant):  # type: ignore[no-untyped-def]
    """Set rp_filter=2 in the (disposable) root namespace while a variant is built,
    as systemd's 50-default.conf does on many hosts; restore it afterwards."""
    keys = ["/proc/sys/net/ipv4/conf/all/rp_filter", "/proc/sys/net/ipv4/conf/default/rp_filter"]
    old = [open(k).read().strip() for k in keys]
    try:
        for k in keys:
            with open(k, "w") as f:
                f.write("2")
        yield
    finally:
        for k, v in zip(keys, old, strict=True):
            with open(k, "w") as f:
                f.write(v)


def _inheritance(lab: Lab, variant: Variant) -> Outcome:
    from lab.builder import sysctl

    got = sysctl.read(lab.ns("rs1"), ["net.ipv4.conf.all.rp_filter",
                                      "net.ipv4.conf.eth0.rp_filter"])
    ev = ["root namespace had rp_filter=2 while the lab was built; rs1 has "
          + ", ".join(f"{k}={v}" for k, v in got.items())]
    return Outcome(got["net.ipv4.conf.all.rp_filter"] == "2", ev)


register(Scenario(
    name="sysctl-inheritance",
    symptom="namespaces (containers, labs) have ARP/rp_filter values nobody set in them",
    trigger="a new namespace copies conf/all and conf/default from the host's initial "
            "namespace (devconf_inherit_init_net=0)",
    fix="write every knob in every namespace (the lab pins them; the broken variant is a naive "
        "lab that does not)",
    broken=lambda: default_dr(rs=1),
    fixed=lambda: default_dr(rs=1),
    observe=_inheritance,
    needs_ipvs=False, services=False, naive_broken=True, needs_vm=True,
    around=_host_rp_filter,
))


# 17 --------------------------------------------------------------------------
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
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from lab.wire.frames import decode
    from lab.wire.packet import packet_socket

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

        def icmp() -> list:
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
))

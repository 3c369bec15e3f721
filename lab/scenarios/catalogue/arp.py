"""ARP: who answers for the VIP, and what the hosts announce."""

from __future__ import annotations

from lab.builder import Lab
from lab.model import Address, Topology, default_dr
from lab.model.predict import RsConfig, Scope, topology_for
from lab.probes import arp
from lab.probes.capture import Capture
from lab.probes.rs_arp import measure
from lab.roles import client, director
from lab.scenarios.base import Outcome, Scenario, Variant, register
from lab.wire.frames import parse_arp

IGNORE0 = {"net.ipv4.conf.all.arp_ignore": "0", "net.ipv4.conf.eth0.arp_ignore": "0"}
ANNOUNCE0 = {"net.ipv4.conf.all.arp_announce": "0", "net.ipv4.conf.eth0.arp_announce": "0"}
ANNOUNCE1 = {"net.ipv4.conf.all.arp_announce": "1", "net.ipv4.conf.eth0.arp_announce": "1"}


def _rs_in_census(lab: Lab, variant: Variant) -> Outcome:
    c = arp.census(lab)
    rss = sorted(c.hosts & {h.name for h in lab.topology.real_servers})
    return Outcome(bool(rss), [str(c)] + [f"{h} answers who-has VIP: clients can resolve the "
                                          "VIP to it and bypass the director" for h in rss])


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
    source="LVS-HOWTO, 'The ARP problem'; Documentation/networking/ip-sysctl.rst (arp_ignore)",
))


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
    source=("Documentation/networking/ip-sysctl.rst (arp_ignore, arp_announce: the max of "
            "conf/all and conf/<dev>); net/ipv4/arp.c"),
))


def _only(lab: Lab, rs: str) -> None:
    """Weight 1 for ``rs``, 0 for every other real server (ipvsadm -e)."""
    for h in lab.topology.real_servers:
        director.set_weight(lab, h.name, 1 if h.name == rs else 0)


def _poisoning(lab: Lab, variant: Variant) -> Outcome:
    vip = lab.topology.main_service.vip
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
    source="Documentation/networking/ip-sysctl.rst (arp_announce); LVS-HOWTO, 'The ARP problem'",
))


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
    source="net/ipv4/fib_frontend.c (a prefix on lo becomes local routes)",
))


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
    source=("Documentation/networking/ip-sysctl.rst (arp_ignore 1-3 answer for addresses on "
            "the receiving interface)"),
))


def _ignore3(scope: Scope) -> Topology:
    t = default_dr(rs=1, rs_sysctls={"net.ipv4.conf.all.arp_ignore": "3",
                                     "net.ipv4.conf.eth0.arp_ignore": "3"})
    t.host("rs1").lo = [Address("192.0.2.100/32", scope)]
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
    source=("Documentation/networking/ip-sysctl.rst (arp_ignore=3: scope host); iproute2 "
            "ip-address(8)"),
))


def _director_vip_primary(vip_first: bool) -> Topology:
    t = default_dr()
    d = t.host("director").interfaces[0]
    d.addresses = ([Address("192.0.2.100/24"), Address("192.0.2.2/24")] if vip_first
                   else [Address("192.0.2.2/24"), Address("192.0.2.100/32")])
    return t


def _director_arps(lab: Lab, variant: Variant) -> Outcome:
    vip = lab.topology.main_service.vip
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
    source=("net/ipv4/devinet.c (primary and secondary addresses); net/ipv4/arp.c "
            "(arp_solicit source)"),
))

"""Neighbours: which interface answers ARP/NDP for an address, and which does not.

What the knobs really test. ``arp_ignore=0`` (the default) answers a who-has
for *any* local address, whatever interface holds it, NOARP dummies included
(kube-proxy's ``kube-ipvs0``, kube-router's ``kube-dummy-if``): NOARP only stops
the dummy itself from doing ARP. ``arp_ignore=1`` answers only for addresses
on the receiving interface, which also silences addresses that neighbours
*should* reach through another interface (kubernetes#72779, the collateral
of kubernetes#70530). Two NICs on one LAN answer for each other's addresses
("ARP flux") unless each answers only for its own. IPv6 has no arp_ignore:
Linux answers a Neighbor Solicitation only for addresses on the receiving
interface, so a VIP on the LAN interface is answered and a VIP on ``lo`` is
not. Every verdict comes from a census: the requests on the wire and the
replies attributed to hosts by MAC.
"""

from __future__ import annotations

from lab.builder import Lab
from lab.model import Address, Interface, Topology, default_dr
from lab.model.defaults import to_ipv6, v6
from lab.probes import arp
from lab.probes.ndp import ndp_census
from lab.scenarios.base import Outcome, Scenario, Variant, register

VIP = "192.0.2.100"
STRICT = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2"}
LOOSE = {"net.ipv4.conf.all.arp_ignore": "0", "net.ipv4.conf.all.arp_announce": "0",
         "net.ipv4.conf.eth0.arp_ignore": "0", "net.ipv4.conf.eth0.arp_announce": "0"}
K8S = "https://github.com/kubernetes/kubernetes"


def _rs_answers(lab: Lab, variant: Variant) -> Outcome:
    c = arp.census(lab)
    rss = sorted(c.hosts & {h.name for h in lab.topology.real_servers})
    return Outcome(bool(rss), [str(c)] + [f"{h} answers who-has VIP on eth0 although it holds "
                                          "the VIP only on a NOARP dummy" for h in rss])


# -- 3. noarp-dummy-vip ---------------------------------------------------------

def _dummy_vip(strict: bool) -> Topology:
    t = default_dr(rs=1, rs_sysctls={**LOOSE, **(STRICT | {
        "net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.conf.eth0.arp_announce": "2"}
        if strict else {})})
    rs = t.host("rs1")
    rs.lo = []
    rs.dummies = [Interface("kube-ipvs0", "", [Address(f"{VIP}/32")], kind="dummy")]
    return t


register(Scenario(
    name="noarp-dummy-vip",
    symptom="a node answers who-has for a VIP it holds only on a NOARP dummy interface "
            "(kube-ipvs0, kube-dummy-if): neighbours send VIP traffic straight to it",
    trigger="arp_ignore=0 (the default) answers for any local address on any interface; "
            "NOARP on the dummy only stops the dummy itself from doing ARP",
    fix="strict ARP: net.ipv4.conf.all.arp_ignore=1 and arp_announce=2 (kube-proxy "
        "--ipvs-strict-arp / strictARP: true)",
    broken=lambda: _dummy_vip(False),
    fixed=lambda: _dummy_vip(True),
    observe=_rs_answers,
    needs_ipvs=False, services=False,
    source=("https://github.com/cloudnativelabs/kube-router/issues/561; "
            "https://github.com/metallb/metallb/issues/153; "
            f"{K8S}/pull/70530; {K8S}/pull/75295 (--ipvs-strict-arp); "
            "Documentation/networking/ip-sysctl.rst (arp_ignore); net/ipv4/arp.c "
            "(arp_ignore, inet_confirm_addr)"),
))


# -- 4. arp-ignore-collateral -------------------------------------------------------

EXTERNAL = "192.0.2.50"  # an externalIP from the LAN's own prefix, as in kubernetes#72779


def _collateral(on_dummy: bool) -> Topology:
    t = default_dr(rs=1)  # arp_ignore=1, arp_announce=2 everywhere on rs1 (strict ARP)
    rs = t.host("rs1")
    ext = Address(f"{EXTERNAL}/32")
    if on_dummy:
        rs.dummies = [Interface("kube-ipvs0", "", [ext], kind="dummy")]
    else:
        rs.interfaces[0].addresses.append(ext)
    return t


def _external_unanswered(lab: Lab, variant: Variant) -> Outcome:
    c = arp.census(lab, EXTERNAL)
    vip = arp.census(lab)
    ev = [str(c), str(vip)]
    if "rs1" not in c.hosts:
        ev.append(f"nobody answers who-has {EXTERNAL} on the LAN although rs1 holds it and "
                  "serves it: neighbours get no MAC (neighbour entry FAILED)")
    return Outcome("rs1" not in c.hosts, ev)


register(Scenario(
    name="arp-ignore-collateral",
    symptom="an address the node must serve to its LAN neighbours (an externalIP on "
            "kube-ipvs0) is never answered by ARP: `ip neigh` shows FAILED on other hosts",
    trigger="net.ipv4.conf.all.arp_ignore=1 (strict ARP, set for the VIPs) answers only for "
            "addresses on the receiving interface, and that address is on another interface",
    fix="put addresses neighbours must reach on the interface they arrive on (here eth0), or "
        "set arp_ignore=1 only where it is needed (kube-proxy made strict ARP opt-in)",
    broken=lambda: _collateral(True),
    fixed=lambda: _collateral(False),
    observe=_external_unanswered,
    needs_ipvs=False, services=False,
    source=(f"{K8S}/pull/70530 (sets all.arp_ignore=1); {K8S}/issues/72779 (externalIPs "
            f"stop resolving); {K8S}/issues/71555; {K8S}/pull/75295 (strict ARP opt-in); "
            "Documentation/networking/ip-sysctl.rst (arp_ignore=1)"),
    stimulus="drlab check asks only for the VIP and the hosts' own addresses; the silenced "
             "address needs its own census",
))


# -- 5. arp-flux-two-nics -----------------------------------------------------------

SECOND = "192.0.2.111"


def _two_nics(fixed: bool) -> Topology:
    knobs = ({**STRICT, "net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.conf.eth1.arp_ignore": "1",
              "net.ipv4.conf.eth0.arp_announce": "2", "net.ipv4.conf.eth1.arp_announce": "2"}
             if fixed else {**LOOSE, "net.ipv4.conf.eth1.arp_ignore": "0",
                            "net.ipv4.conf.eth1.arp_announce": "0"})
    t = default_dr(rs=1, rs_sysctls=knobs)
    rs = t.host("rs1")
    rs.interfaces.append(Interface("eth1", "lan", [Address(f"{SECOND}/24")]))
    return t


def _flux(lab: Lab, variant: Variant) -> Outcome:
    own = {"eth0": "192.0.2.101", "eth1": SECOND}
    ev, symptom = [], False
    for iface, ip in own.items():
        c = arp.census(lab, ip)
        mine = lab.mac("rs1", iface)
        other = sorted(set(c.responders.get("rs1", [])) - {mine})
        ev.append(str(c))
        if other:
            symptom = True
            ev.append(f"rs1 answers who-has {ip} ({iface}'s address) with {other}, the MAC of "
                      "its other NIC: ARP flux, the address's MAC depends on which reply wins")
        elif mine not in c.responders.get("rs1", []):
            symptom = True
            ev.append(f"nobody answers who-has {ip} with {iface}'s MAC")
    return Outcome(symptom, ev)


register(Scenario(
    name="arp-flux-two-nics",
    symptom="a host with two NICs on one LAN answers ARP for one NIC's address through the "
            "other as well; neighbours' entries flip between the two MACs",
    trigger="arp_ignore=0 and arp_filter=0 (the defaults): an ARP request for any local address "
            "is answered on every interface that receives it",
    fix="arp_ignore=1 (and arp_announce=2) so each NIC answers only for its own addresses; or "
        "arp_filter=1 with source-based policy routes (one table per NIC)",
    broken=lambda: _two_nics(False),
    fixed=lambda: _two_nics(True),
    observe=_flux,
    needs_ipvs=False, services=False,
    source=("LVS-HOWTO, 'The ARP problem' (ARP flux with two NICs on one network); "
            "Documentation/networking/ip-sysctl.rst (arp_filter: 'you must use source based "
            "routing for this to work'; arp_ignore=1); net/ipv4/arp.c (arp_filter)"),
    stimulus="drlab check censuses the VIP; flux is on the host's own addresses and shows "
             "only in a census for each of them",
))


# -- 11. ipv6-vip-on-lan-interface ----------------------------------------------------

def _v6_vip_on_lan() -> Topology:
    t = default_dr(rs=2)
    for rs in t.real_servers:
        rs.lo = []
        rs.interfaces[0].addresses.append(Address(f"{VIP}/32"))
    t = to_ipv6(t)
    t.waive = frozenset({"vip-duplicate"})
    return t


def _rs_answers_ns(lab: Lab, variant: Variant) -> Outcome:
    c = ndp_census(lab)
    rss = sorted(c.hosts & {h.name for h in lab.topology.real_servers})
    return Outcome(bool(rss), [str(c)] + [
        f"{h} answers the Neighbor Solicitation for the VIP {v6(VIP)}: clients or the router "
        "can resolve the VIP to it and bypass the director" for h in rss])


register(Scenario(
    name="ipv6-vip-on-lan-interface",
    symptom="real servers answer Neighbor Solicitations for the IPv6 VIP",
    trigger="the VIP on the real server's LAN interface: Linux answers NS for every address "
            "on the receiving interface, and IPv6 has no arp_ignore/arp_announce to stop it",
    fix="put the VIP on lo (/128): NS arriving on eth0 are answered only for eth0's addresses",
    broken=_v6_vip_on_lan,
    fixed=lambda: default_dr(rs=2, ipv6=True),
    observe=_rs_answers_ns,
    needs_ipvs=False, services=False,
    source=("net/ipv6/ndisc.c (ndisc_recv_ns: ipv6_chk_addr on the receiving device); "
            "Documentation/networking/ip-sysctl.rst (arp_ignore is IPv4 only)"),
))

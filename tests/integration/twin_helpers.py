"""Round-trip helper: compare a twin with the lab it was collected from
(lab.probes.snapshot.collect collects it)."""

from __future__ import annotations

from lab.model import Topology
from lab.scenarios.diagnose import conf, vip_place

KNOBS = ("arp_ignore", "arp_announce", "rp_filter")


def differences(lab: Topology, twin: Topology) -> list[str]:
    """What differs between a lab's directors and real servers and its twin's:
    roles, addresses per interface, lo and dummies, effective ARP/rp_filter
    sysctls on every interface, services (VIP, port, protocol, scheduler,
    persistence, real servers and weights)."""
    out: list[str] = []
    members = {r.host for s in lab.services for r in s.real_servers} | {
        s.director for s in lab.services}
    for h in lab.hosts:
        holds_vip = any(vip_place(lab, h, v) for v in lab.vips)
        if h.name not in members and not holds_vip:
            continue  # the lab's client and routers: not part of the cluster
        t = next((x for x in twin.hosts if x.label == (h.label or h.name)), None)
        if t is None:
            out.append(f"{h.name}: not in the twin")
            continue
        if h.name in members and t.role != h.role:
            out.append(f"{h.name}: role {h.role} -> {t.role}")
        for i in h.interfaces:
            try:
                ti = t.interface(i.name)
            except KeyError:
                out.append(f"{h.name}: interface {i.name} missing")
                continue
            if [a.cidr for a in i.addresses] != [a.cidr for a in ti.addresses]:
                out.append(f"{h.name}/{i.name}: {[a.cidr for a in i.addresses]} -> "
                           f"{[a.cidr for a in ti.addresses]}")
        if sorted((a.cidr, a.scope) for a in h.lo) != sorted((a.cidr, a.scope) for a in t.lo):
            out.append(f"{h.name}/lo: {h.lo} -> {t.lo}")
        if sorted((d.name, str(d.addresses)) for d in h.dummies) != sorted(
                (d.name, str(d.addresses)) for d in t.dummies):
            out.append(f"{h.name}: dummies {h.dummies} -> {t.dummies}")
        for dev in ["all", "lo", *(i.name for i in h.interfaces)]:
            for k in KNOBS:
                if conf(h, dev, k) != conf(t, dev, k):
                    out.append(f"{h.name}: net.ipv4.conf.{dev}.{k} {conf(h, dev, k)} -> "
                               f"{conf(t, dev, k)}")

    def svc_key(t, s):  # noqa: ANN001, ANN202
        return (s.vip, s.port, s.protocol, s.fwmark, s.scheduler, s.persistence,
                sorted((t.host(r.host).shown, r.weight) for r in s.real_servers))

    if sorted((svc_key(lab, s) for s in lab.services), key=str) != sorted(
            (svc_key(twin, s) for s in twin.services), key=str):
        out.append(f"services {[svc_key(lab, s) for s in lab.services]} -> "
                   f"{[svc_key(twin, s) for s in twin.services]}")
    return out

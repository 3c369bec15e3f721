"""NDP census: who answers a Neighbor Solicitation for an IPv6 address (the VIP).

The IPv6 twin of :func:`lab.probes.arp.census`, on the same engine
(:mod:`lab.probes.census`). Linux answers a solicitation only for addresses
on the receiving interface, so a VIP on ``lo`` is not answered by a real
server, with no sysctl at all. Barriers work the same way: right after the
solicitation for the target, each other host on the segment is solicited for
its own address; once it has answered, its answer (or silence) about the
target is final.
"""

from __future__ import annotations

from lab.builder import Lab
from lab.probes import census as engine
from lab.probes.census import Census
from lab.wire.frames import parse_advert, solicitation


def ndp_census(lab: Lab, target: str | None = None, asker: str = "client",
               window: float = 0.5) -> Census:
    t = lab.topology
    target = target or (t.service.vip if t.service else None)
    if target is None:
        raise ValueError("ndp_census: no target and no service VIP")
    iface = t.lan_iface(asker)  # the asker's interface on the director's segment
    src_ip = next(a.ip for a in t.host(asker).interface(iface).addresses if a.family == 6)
    src_mac = lab.mac(asker, iface)

    def frames(peers: list[engine.Peer]) -> list[bytes]:
        return [solicitation(src_mac, src_ip, target)] + [
            solicitation(src_mac, src_ip, p.ip) for p in peers if p.ip != target]

    def parse(frame: bytes) -> engine.Answer | None:
        na = parse_advert(frame)
        return engine.Answer(*na) if na else None

    return engine.run(lab, asker, iface, target, 6, frames, parse, window)

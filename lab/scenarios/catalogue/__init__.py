"""The catalogue: every known LVS-DR failure, reproducible by name.

Each entry builds a *broken* and a *fixed* lab and observes the symptom from
packets and kernel counters. One module per family: :mod:`.arp` (who answers
for the VIP, what hosts announce), :mod:`.routing` (where DR packets go and
where they are dropped), :mod:`.ipvs` (the director's table and knobs),
:mod:`.conntable` (what IPVS's connection entries do to flows: timeouts, stale
destinations, port reuse, persistence), :mod:`.host` (what the machine around
the lab does), :mod:`.keepalived` (the control plane directors run under),
:mod:`.twodirectors` (an active and a standby director: sync daemons,
backup_only), :mod:`.paths` (where the packets of a DR connection go around
the director: gateways, firewalls, ICMP), :mod:`.neighbours` (ARP and NDP
beyond the VIP: dummies, two NICs, IPv6) and :mod:`.scale` (kube-proxy-sized tables;
its scenario runs by name only: :data:`BY_HAND`). The catalogue table in
docs/scenarios.md is generated from this registry (``drlab scenarios --markdown``), so it
cannot drift.
"""

from lab.scenarios.base import BY_HAND, REGISTRY
from lab.scenarios.catalogue import (  # noqa: F401  (they register)
    arp,
    conntable,
    host,
    ipvs,
    keepalived,
    neighbours,
    paths,
    routing,
    scale,
    twodirectors,
)

__all__ = ["BY_HAND", "REGISTRY"]

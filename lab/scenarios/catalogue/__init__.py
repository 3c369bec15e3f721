"""The catalogue: every known LVS-DR failure, reproducible by name.

Each entry builds a *broken* and a *fixed* lab and observes the symptom from
packets and kernel counters. One module per family: :mod:`.arp` (who answers
for the VIP, what hosts announce), :mod:`.routing` (where DR packets go and
where they are dropped), :mod:`.ipvs` (the director's table and knobs) and
:mod:`.host` (what the machine around the lab does), :mod:`.neighbours` (which
interface answers ARP/NDP for an address) and :mod:`.keepalived` (the
control plane directors run under). The README's catalogue
table is generated from this registry (``drlab scenarios --markdown``), so it
cannot drift.
"""

from lab.scenarios.base import REGISTRY
from lab.scenarios.catalogue import (  # noqa: F401  (they register)
    arp,
    host,
    ipvs,
    keepalived,
    neighbours,
    routing,
)

__all__ = ["REGISTRY"]

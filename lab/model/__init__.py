"""Topology model: what a lab is made of (pure data, no root needed)."""

from lab.model.defaults import RS_ARP_SYSCTLS, VIP, default_dr, rs_ip
from lab.model.loader import load_topology, topology_from_dict, topology_to_dict
from lab.model.topology import (
    DOC_RANGES,
    SCHEDULERS,
    Address,
    Host,
    Interface,
    RealServer,
    Route,
    Segment,
    Topology,
    VirtualService,
    check_sysctl,
)

__all__ = [
    "DOC_RANGES", "RS_ARP_SYSCTLS", "SCHEDULERS", "VIP", "Address", "Host", "Interface",
    "RealServer", "Route", "Segment", "Topology", "VirtualService", "check_sysctl",
    "default_dr", "load_topology", "rs_ip", "topology_from_dict", "topology_to_dict",
]

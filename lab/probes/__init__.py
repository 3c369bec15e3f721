"""Probes: what the kernel did, as data.

ARP/NDP census, announcements, captures and the failure recorder, DR path proof,
the ARP matrix measurement (rs_arp), IPVS knob probes (vs_knobs), counters, state
dumps, check of a running lab, VRRP, and snapshot (scripts/collect in a lab's hosts).
"""

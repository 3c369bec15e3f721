"""Probes: observe what the kernel did (counters; ARP and captures come next)."""

"""Probes: what the kernel did, as data (census, captures, path proof, counters, dumps, check)."""

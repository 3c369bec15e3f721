"""Builder: topology model -> namespaces, bridges, veths, addresses, routes, sysctls."""

from lab.builder.build import Lab, host_ns_name, mac_for, segment_ns_name
from lab.builder.ownership import reap, records

__all__ = ["Lab", "host_ns_name", "mac_for", "reap", "records", "segment_ns_name"]

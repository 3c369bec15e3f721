"""Host invariance: the lab must leave the root namespace exactly as it found it.

:func:`snapshot` records the root namespace's links, addresses, routes, the
sysctls the lab writes inside its own namespaces, the root IPVS table and
``/run/netns``; :func:`diff` lists what changed. The pytest plugin compares
a snapshot taken at session start with one taken at the end.

The IPVS table is compared as its services and real servers (without the
connection counters): loading ``ip_vs`` (which any IPVS test must do) turns
"no table" into an empty one, and that is not a change.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from pyroute2 import IPRoute

from lab.builder import netns
from lab.builder.sysctl import PINNED_CONF

SYSCTL_KEYS = [f"net/ipv4/conf/{d}/{k}" for d in ("all", "default") for k in PINNED_CONF] + [
    f"net/ipv6/conf/{d}/{k}" for d in ("all", "default") for k in ("disable_ipv6", "accept_dad")
]


def snapshot() -> dict[str, Any]:
    """The root namespace as seen from this process's main namespace."""
    snap: dict[str, Any] = {}
    with IPRoute() as ipr:
        snap["links"] = sorted(
            f"{link.get('ifname')} {link.get('address')} mtu={link.get('mtu')} "
            f"{link.get('operstate')}" for link in ipr.get_links())
        snap["addresses"] = sorted(
            f"{a.get('label') or a['index']} {a.get('address')}/{a['prefixlen']}"
            for a in ipr.get_addr())
        snap["routes"] = sorted(
            f"{r.get('dst') or 'default'}/{r['dst_len']} via {r.get('gateway')} "
            f"oif {r.get('oif')} table {r.get('table')}"
            for fam in (socket.AF_INET, socket.AF_INET6)
            for r in ipr.get_routes(family=fam, table=254))
    sysctls = {}
    for key in SYSCTL_KEYS:
        try:
            with open(f"/proc/sys/{key}") as f:
                sysctls[key] = f.read().strip()
        except OSError:
            sysctls[key] = "(absent)"
    snap["sysctls"] = sysctls
    try:
        with open("/proc/net/ip_vs") as f:
            snap["ipvs"] = ipvs_entries(f.read())
    except OSError:
        snap["ipvs"] = []  # (no IPVS: ip_vs not loaded) the same as an empty table
    snap["netns"] = netns.listing()
    snap["drlab_records"] = sorted(os.listdir("/run/drlab/labs")) \
        if os.path.isdir("/run/drlab/labs") else []
    return snap


def _addr(hexport: str) -> str:
    """``C0000264:0050`` -> ``192.0.2.100:80``; IPv6 (``[2001:0db8:...]:0050``) and
    fwmarks (``00000001``) as the kernel writes them, normalized."""
    host, sep, port = hexport.rpartition(":")
    try:
        if sep and len(host) == 8 and "[" not in host:
            return f"{ipaddress.IPv4Address(int(host, 16))}:{int(port, 16)}"
        if sep and host.startswith("["):
            return f"[{ipaddress.IPv6Address(host[1:-1])}]:{int(port, 16)}"
    except ValueError:
        pass
    return hexport


def ipvs_entries(text: str) -> list[str]:
    """The services and real servers of ``/proc/net/ip_vs`` (sorted; without the
    header and the connection counters, which change with traffic, not config).

    A service is ``PROTO ADDR:PORT SCHEDULER [FLAGS]`` (``FWM MARK ...`` for a
    fwmark), a real server ``<service> -> ADDR:PORT FORWARD WEIGHT``.
    """
    out: list[str] = []
    service = ""
    for line in text.splitlines()[3:]:  # (version, and the two column headers)
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "->":
            out.append(f"{service} -> {_addr(fields[1])} {' '.join(fields[2:4])}")
        else:
            service = " ".join([fields[0], _addr(fields[1]), *fields[2:]])
            out.append(service)
    return sorted(out)


def diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Human-readable differences between two snapshots (empty when identical)."""
    out: list[str] = []
    for key in before:
        b, a = before[key], after.get(key)
        if b == a:
            continue
        if isinstance(b, list) and isinstance(a, list):
            for x in sorted(set(a) - set(b)):
                out.append(f"{key}: added {x}")
            for x in sorted(set(b) - set(a)):
                out.append(f"{key}: removed {x}")
        elif isinstance(b, dict) and isinstance(a, dict):
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    out.append(f"{key}: {k} {b.get(k)} -> {a.get(k)}")
        else:
            out.append(f"{key}: changed")
    return out

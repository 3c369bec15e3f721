"""Kernel counters as seen inside a lab host (``nstat`` without the process)."""

from __future__ import annotations

from collections.abc import Callable

from lab.builder import Lab, netns


def parse_snmp(text: str) -> dict[str, int]:
    """Parse /proc/net/snmp or /proc/net/netstat: header line, value line, per group.

    Returns ``{"Ip.InAddrErrors": 3, "TcpExt.IPReversePathFilter": 0, ...}``.
    """
    out: dict[str, int] = {}
    lines = text.splitlines()
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        group, names = head.split(":", 1)
        vgroup, values = vals.split(":", 1)
        if group != vgroup:
            continue
        for n, v in zip(names.split(), values.split(), strict=False):
            out[f"{group}.{n}"] = int(v)
    return out


def counters(lab: Lab, host: str) -> dict[str, int]:
    """SNMP and extended counters of ``host``'s namespace."""
    ns = lab.ns(host)
    return {**parse_snmp(netns.read_proc(ns, "net/snmp")),
            **parse_snmp(netns.read_proc(ns, "net/netstat"))}


def counter(lab: Lab, host: str, name: str) -> int:
    c = counters(lab, host)
    if name not in c:
        raise KeyError(f"no counter {name!r} in {host}'s namespace")
    return c[name]


def rising(lab: Lab, name: str, hosts: list[str]) -> Callable[[], dict[str, int]]:
    """Read counter ``name`` on ``hosts`` now; the returned function says, each
    time it is called, how much it rose since on each host where it did."""
    before = {h: counter(lab, h, name) for h in hosts}

    def rises() -> dict[str, int]:
        now = {h: counter(lab, h, name) - before[h] for h in hosts}
        return {h: n for h, n in now.items() if n > 0}
    return rises

"""Return paths: where a DR reply (or an error about it) meets the director again.

Direct Routing sends requests through the director and replies straight from
the real servers, source address the VIP. Anything that brings a reply, or an
ICMP error about one, back to the director meets a host where the VIP is a
local address, and a firewall that only ever saw half of each connection:

* ``rs-gateway-is-director``: the real servers route replies via the director.
  A packet arriving with a local source address is a martian
  (``fib_validate_source`` in net/ipv4/fib_frontend.c returns -EINVAL unless
  ``accept_local`` is set); the kernel counts it in ``in_martian_src`` of
  /proc/net/stat/rt_cache (no SNMP counter) and drops it before IPVS sees it.
"""

from __future__ import annotations

from lab.builder import Lab, netns
from lab.model import Route, Topology, default_dr
from lab.probes.capture import capture
from lab.roles import client
from lab.scenarios.base import Outcome, Scenario, Variant, register
from lab.wire.frames import decode

LAN_ROUTER = "192.0.2.1"
DIRECTOR = "192.0.2.2"


def _rt_cache(lab: Lab, host: str, column: str) -> int:
    """A column of /proc/net/stat/rt_cache summed over CPUs (the counters are kernel-wide)."""
    text = netns.read_proc(lab.ns(host), "net/stat/rt_cache").splitlines()
    names = text[0].split()
    i = names.index(column)
    return sum(int(row.split()[i], 16) for row in text[1:] if row.strip())


def _gateway_topology(via: str) -> Topology:
    t = default_dr(rs=1, behind_router=True)
    t.host("director").sysctls["net.ipv4.conf.all.forwarding"] = "1"
    t.host("rs1").routes = [Route("default", via)]
    return t


def _gateway(lab: Lab, variant: Variant) -> Outcome:
    svc = lab.topology.service
    assert svc is not None
    cip = lab.topology.primary_ip("client")
    before = _rt_cache(lab, "director", "in_martian_src")
    with capture(lab, "director", "client") as caps:
        try:
            r = client.connect(lab, timeout=2)
            ok, ev = True, [f"connection served by {r.server}"]
        except client.ConnectError as e:
            ok, ev = False, [f"connection failed: {e}"]
    martians = _rt_cache(lab, "director", "in_martian_src") - before

    def replies(host: str, outgoing: bool) -> int:
        return sum(1 for f in caps[f"{host}-eth0"].frames if f.outgoing == outgoing
                   and (x := decode(f.data)).src == svc.vip and x.sport == svc.port
                   and x.dst == cip)
    at_dir = replies("director", False)
    left_dir = replies("director", True)
    at_client = replies("client", False)
    ev += [f"director received {at_dir} replies from {svc.vip}:{svc.port} to {cip}, "
           f"forwarded {left_dir}",
           f"client received {at_client} replies from the VIP",
           f"director in_martian_src (/proc/net/stat/rt_cache) +{martians}"]
    return Outcome(not ok and at_dir > 0 and left_dir == 0 and martians > 0, ev)


register(Scenario(
    name="rs-gateway-is-director",
    symptom="every connection through the director hangs after the SYN; the real server "
            "answers, but no reply reaches the client",
    trigger="the real servers' default gateway is the director: their replies, source the "
            "VIP, arrive where the VIP is local and are dropped as martians (in_martian_src)",
    fix="route the real servers' replies via the router, not the director (or, on the "
        "director, accept_local=1 with rp_filter off on the LAN interface)",
    broken=lambda: _gateway_topology(DIRECTOR),
    fixed=lambda: _gateway_topology(LAN_ROUTER),
    observe=_gateway,
    stimulus="check sees connections fail; naming the drop needs the director's "
             "in_martian_src counter and a capture of the replies arriving there",
    source=("https://github.com/acassen/keepalived/issues/1827; net/ipv4/fib_frontend.c "
            "(fib_validate_source: a local source is martian unless accept_local); "
            "Documentation/networking/ip-sysctl.rst (accept_local, rp_filter)"),
))


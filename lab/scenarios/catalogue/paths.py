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
* ``director-stateful-firewall``: conntrack on the director sees the client's
  half of each connection only. Unless net.ipv4.vs.conntrack=1, IPVS detaches
  the (unconfirmed) conntrack entry of each packet it forwards
  (``ip_vs_notrack``), so the client's next ACK is picked up as a NEW
  mid-stream connection, not ESTABLISHED; a policy that accepts NEW only as a
  SYN drops it. With net.ipv4.vs.conntrack=1 the entry survives in SYN_SENT,
  and the client's ACK is INVALID instead (the SYN-ACK never passes the
  director): the issue's vs.conntrack fix does not help DR, as the broken
  run measures. What works is accepting the service's packets first.
* ``pmtu-frag-needed-to-vip``: the router before a narrow hop answers a
  full-size reply with ICMP fragmentation-needed addressed to its source, the
  VIP, which the director owns. ``ip_vs_in_icmp`` relays ICMP errors about a
  connection to its real server, which then learns the path MTU; an
  echo-only ICMP firewall on the director (filter input runs before IPVS's
  LOCAL_IN hook) makes a PMTU black hole, and clamping the MSS where the path
  narrows avoids needing the ICMP at all.
"""

from __future__ import annotations

import json
import select
import time

import sh

from lab.builder import Lab, netns, sysctl
from lab.model import Route, Topology, default_dr
from lab.probes.capture import capture
from lab.roles import client
from lab.scenarios.base import Outcome, Scenario, Variant, register
from lab.util import scaled
from lab.wire.frames import decode
from lab.wire.packet import Frame

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
        "director, net.ipv4.conf.all.accept_local=1: `drlab validate --scenario "
        "rs-gateway-is-director --host director --sysctl net.ipv4.conf.all.accept_local=1` "
        "heals it with rp_filter 0, 1 or 2, the VIP being on the interface the replies "
        "arrive on)",
    broken=lambda: _gateway_topology(DIRECTOR),
    fixed=lambda: _gateway_topology(LAN_ROUTER),
    observe=_gateway,
    stimulus="check sees connections fail; naming the drop needs the director's "
             "in_martian_src counter and a capture of the replies arriving there",
    source=("https://github.com/acassen/keepalived/issues/1827; net/ipv4/fib_frontend.c "
            "(fib_validate_source: a local source is martian unless accept_local); "
            "Documentation/networking/ip-sysctl.rst (accept_local, rp_filter)"),
))


#: A stateful input policy as hardening guides write it: established traffic in,
#: conntrack's INVALID out, and a NEW connection only by a SYN.
_STATEFUL = """\
    ct state established,related counter accept comment "established"
    ct state invalid counter drop comment "invalid"
    tcp flags & (fin|syn|rst|ack) != syn ct state new counter drop comment "new-not-syn"
    counter accept comment "new"
"""


def _firewall_rules(vip: str, port: int, variant: Variant) -> str:
    first = (f'    ip daddr {vip} tcp dport {port} counter accept comment "vip"\n'
             if variant == "fixed" else "")
    return ("table inet drlab_fw {\n  chain input {\n"
            "    type filter hook input priority filter; policy accept;\n"
            + first + _STATEFUL + "  }\n}\n")


def _nft(lab: Lab, host: str, *args: str, stdin: str | None = None) -> str:
    return str(sh.Command("ip")("netns", "exec", lab.ns(host), "nft", *args, _in=stdin))


def _rule_counters(lab: Lab, host: str) -> dict[str, int]:
    """Packets counted by each commented rule of the drlab_fw table."""
    out: dict[str, int] = {}
    for item in json.loads(_nft(lab, host, "-j", "list", "table", "inet", "drlab_fw"))["nftables"]:
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for e in rule["expr"]:
            if "counter" in e:
                out[rule["comment"]] = e["counter"]["packets"]
    return out


def _stateful(lab: Lab, variant: Variant) -> Outcome:
    svc = lab.topology.service
    assert svc is not None
    _nft(lab, "director", "-f", "-", stdin=_firewall_rules(svc.vip, svc.port, variant))
    ev = []
    failed = 0
    for _ in range(2):
        try:
            r = client.connect(lab, timeout=2)
            ev.append(f"connection served by {r.server}")
        except client.ConnectError as e:
            failed += 1
            ev.append(f"connection failed: {e}")
    counts = _rule_counters(lab, "director")
    ev.append("director nft drlab_fw counters (packets): "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
    dropped = counts.get("invalid", 0) + counts.get("new-not-syn", 0)
    symptom = failed > 0 and dropped > 0
    if variant == "broken":  # what the other fix does on this kernel (evidence only)
        sysctl.write(lab.ns("director"), [("net.ipv4.vs.conntrack", "1")])
        before = _rule_counters(lab, "director")
        try:
            r = client.connect(lab, timeout=2)
            res = f"served by {r.server}"
        except client.ConnectError as e:
            res = f"failed: {e}"
        counts = _rule_counters(lab, "director")
        ev.append(f"with net.ipv4.vs.conntrack=1: connection {res}; counters rose "
                  + ", ".join(f"{k} +{v - before.get(k, 0)}" for k, v in counts.items()))
    return Outcome(symptom, ev)


register(Scenario(
    name="director-stateful-firewall",
    symptom="the client's handshake completes (the SYN-ACK comes from the real server) but "
            "the connection then hangs: the real server never sees the client's ACK",
    trigger="a stateful nftables input policy on the director: conntrack there only ever "
            "sees the client's half of a DR connection, so the client's ACK is not "
            "ESTABLISHED and is dropped as INVALID or as NEW-but-not-SYN",
    fix="accept the virtual service's traffic before the state rules (an ipvs/VIP match), "
        "or keep state rules off the DR path",
    broken=lambda: default_dr(rs=1, behind_router=True),
    fixed=lambda: default_dr(rs=1, behind_router=True),
    observe=_stateful,
    stimulus="the scenario loads a stateful nftables policy (table inet drlab_fw) into the "
             "director before connecting",
    source=("https://github.com/kubernetes/kubernetes/issues/17470; "
            "net/netfilter/nf_conntrack_proto_tcp.c (the TCP state table: an ACK while "
            "SYN_SENT is invalid); net/netfilter/ipvs/ip_vs_xmit.c (ip_vs_notrack unless "
            "net.ipv4.vs.conntrack=1); Documentation/networking/ipvs-sysctl.rst (conntrack)"),
))


WAN_MTU = 1400
#: What the client sends and the real server echoes: several full-sized segments.
_PAYLOAD = b"p" * 6000


def _pmtu_topology() -> Topology:
    t = default_dr(rs=1, behind_router=True)
    for host, ifname in (("router", "eth1"), ("client", "eth0")):
        next(i for i in t.host(host).interfaces if i.name == ifname).mtu = WAN_MTU
    return t


#: The director's input policy: ICMP limited to echo, as firewalls often have it.
_ECHO_ONLY = """table inet drlab_fw {
  chain input {
    type filter hook input priority filter; policy accept;
    icmp type echo-request counter accept comment "echo"
    meta l4proto icmp counter drop comment "other-icmp"
  }
}
"""
#: The router's clamp: SYNs arriving from the narrow WAN link carry at most its MSS.
_CLAMP = f"""table inet drlab_clamp {{
  chain clamp {{
    type filter hook forward priority mangle; policy accept;
    iifname "eth1" tcp flags syn tcp option maxseg size set {WAN_MTU - 40} counter comment "clamp"
  }}
}}
"""


def _echo_big(lab: Lab) -> str:

    try:
        _, s = client.open_connection(lab, timeout=2)
    except client.ConnectError as e:
        return f"connection failed: {e}"
    try:
        s.sendall(_PAYLOAD)
        got = 0
        deadline = time.monotonic() + scaled(3)
        while got < len(_PAYLOAD):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    finally:
        s.close()
    return f"{got} of {len(_PAYLOAD)} echoed bytes came back"


def _icmp_too_big(frames: list[Frame], outgoing: bool | None = None) -> list[str]:
    out = []
    for f in frames:
        if outgoing is not None and f.outgoing != outgoing:
            continue
        x = decode(f.data)
        if x.proto == 1 and f.data[34] == 3 and f.data[35] == 4:
            out.append(f"{x.src}>{x.dst} mtu {int.from_bytes(f.data[40:42], 'big')}")
    return out


def _route_mtu(lab: Lab, host: str, dst: str) -> str:
    out = str(sh.Command("ip")("netns", "exec", lab.ns(host), "ip", "-4", "route", "get", dst,
                               "from", lab.topology.service.vip if lab.topology.service else ""))
    return " ".join(out.split())


def _pmtu_round(lab: Lab, label: str) -> tuple[bool, list[str]]:
    cip = lab.topology.primary_ip("client")
    with capture(lab, ("router", "eth0"), "director", "rs1") as caps:
        res = _echo_big(lab)
    ok = res.startswith(f"{len(_PAYLOAD)} of")
    sent = _icmp_too_big(caps["router-eth0"].frames, True)
    at_dir = _icmp_too_big(caps["director-eth0"].frames, False)
    at_rs = _icmp_too_big(caps["rs1-eth0"].frames, False)
    big = [len(f.data) for f in caps["rs1-eth0"].frames if f.outgoing]
    ev = [f"{label}: {res}; rs1's largest frame {max(big, default=0)} bytes",
          f"{label}: router sent {len(sent)} ICMP frag-needed ({', '.join(sorted(set(sent)))}); "
          f"director received {len(at_dir)}, rs1 received {len(at_rs)} (relayed by IPVS)",
          f"{label}: rs1 route to the client: {_route_mtu(lab, 'rs1', cip)}"]
    sh.Command("ip")("netns", "exec", lab.ns("rs1"), "ip", "route", "flush", "cache")
    return ok, ev


def _pmtu(lab: Lab, variant: Variant) -> Outcome:
    # the client's link is narrow but it advertises a full-size MSS (the narrow hop
    # is beyond its own link, as on a tunnel or PPPoE path)
    sh.Command("ip")("netns", "exec", lab.ns("client"), "ip", "route", "replace", "default",
                     "via", "198.51.100.1", "advmss", "1460")
    ev: list[str] = []
    if variant == "broken":  # first without a firewall: does IPVS relay the ICMP?
        _, ev = _pmtu_round(lab, "no firewall")
    _nft(lab, "director", "-f", "-", stdin=_ECHO_ONLY)
    if variant == "fixed":
        _nft(lab, "router", "-f", "-", stdin=_CLAMP)
    ok, more = _pmtu_round(lab, "echo-only ICMP firewall" + (" + MSS clamp" if variant == "fixed"
                                                              else ""))
    ev += more
    counts = _rule_counters(lab, "director")
    ev.append("director nft drlab_fw counters (packets): "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return Outcome(not ok and counts.get("other-icmp", 0) > 0, ev)


register(Scenario(
    name="pmtu-frag-needed-to-vip",
    symptom="small requests work, large replies hang: the real server keeps retransmitting "
            "full-size segments the narrow hop cannot carry",
    trigger="the ICMP fragmentation-needed about a reply is addressed to the VIP, so it "
            "lands on the director; IPVS relays it to the real server, but a director "
            "firewall that allows only ICMP echo drops it first (a PMTU black hole)",
    fix="clamp the MSS where the path narrows (nft 'tcp option maxseg size set'), or let "
        "ICMP destination-unreachable through the director's firewall",
    broken=_pmtu_topology,
    fixed=_pmtu_topology,
    observe=_pmtu,
    stimulus="a 6000-byte echo over a path narrower than the client's advertised MSS, "
             "through an echo-only ICMP firewall the scenario loads on the director",
    source=("https://github.com/cloudnativelabs/kube-router/issues/685; "
            "https://github.com/cilium/cilium/issues/46993; net/netfilter/ipvs/ip_vs_core.c "
            "(ip_vs_in_icmp: ICMP errors about a connection are relayed to its real server); "
            "Documentation/networking/ip-sysctl.rst (route/mtu_expires)"),
))

"""The IPVS director: configured with real ipvsadm, read back over netlink.

Configuration goes through ``ipvsadm -R`` (one process for the whole table: what
Debian's ``ipvsadm-restore`` script does, ``-C`` then ``-R``, without its shell,
``grep`` and second ``ipvsadm``) run with the ``sh`` package inside the director's
namespace. Read-back uses pyroute2's IPVS generic-netlink socket opened inside the
same namespace; connections come from ``/proc/net/ip_vs_conn`` (there is no
netlink dump of them).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sh
from pyroute2 import IPVS, IPVSService
from pyroute2.netlink.exceptions import NetlinkError

from lab.builder import Lab, netns
from lab.errors import LabError
from lab.machine.preflight import require_ipvsadm
from lab.model import Topology, VirtualService
from lab.wire.frames import arp_frame
from lab.wire.packet import packet_socket

#: IP_VS_CONN_F_FWD_MASK values (include/uapi/linux/ip_vs.h).
FWD_METHODS = {0: "masq", 1: "local", 2: "tunnel", 3: "dr", 4: "bypass"}
IP_VS_SVC_F_PERSISTENT = 0x1
RTN_LOCAL = 2  # rtm_type of a route to a local address (linux/rtnetlink.h)


def service_spec(svc: VirtualService) -> str:
    """``-t 192.0.2.100:80`` (or ``-u``, ``-f MARK``, IPv6 in brackets) as ipvsadm takes it."""
    if svc.fwmark is not None:
        return f"-f {svc.fwmark}" + (" -6" if svc.family == 6 else "")
    addr = f"[{svc.vip}]" if svc.family == 6 else svc.vip
    return f"-{'t' if svc.protocol == 'tcp' else 'u'} {addr}:{svc.port}"


def restore_rules(topology: Topology, host: str | None = None) -> str:
    """The ``ipvsadm -R`` (``ipvsadm-restore``) input for the topology's services (DR:
    ``-g``): those of director ``host``, or of the main service's director."""
    if topology.service is None:
        return ""
    host = host or topology.service.director
    lines = []
    vips = topology.vips
    rips: dict[tuple[str, int], str] = {}  # (each real server's RIP once: 50,000 services)
    for svc in topology.services:
        if svc.director != host:
            continue
        spec = service_spec(svc)
        head = f"-A {spec} -s {svc.scheduler}"
        if svc.persistence:
            head += f" -p {svc.persistence}"
            if svc.persistence_netmask:
                head += f" -M {svc.persistence_netmask}"
        lines.append(head)
        for rs in svc.real_servers:
            rip = rips.get((rs.host, svc.family))
            if rip is None:
                rip = rips[(rs.host, svc.family)] = _rip(topology, rs.host, svc.family, vips)
            rip_s = f"[{rip}]" if svc.family == 6 else rip
            dest = rip_s if svc.fwmark is not None else f"{rip_s}:{svc.port}"
            lines.append(f"-a {spec} -r {dest} -g -w {rs.weight}")
    return "\n".join(lines) + "\n" if lines else ""


def nft_rules(topology: Topology, host: str | None = None) -> str:
    """The nftables ruleset that marks the fwmark services' packets on director ``host``
    (default: the main service's director)."""
    if topology.service is None:
        return ""
    host = host or topology.service.director
    rules: dict[str, list[str]] = {}
    for svc in topology.services:
        if svc.fwmark is None or svc.director != host:
            continue
        fam = "ip6" if svc.family == 6 else "ip"
        ports = ", ".join(str(p) for p in svc.ports)
        rules.setdefault(fam, []).append(f"    {fam} daddr {svc.vip} {svc.protocol} dport "
                                         f"{{ {ports} }} meta mark set {svc.fwmark}\n")
    return "".join(f"table {fam} drlab_fwmark {{\n  chain pre {{\n"
                   f"    type filter hook prerouting priority mangle;\n"
                   + "".join(lines) + "  }\n}\n" for fam, lines in rules.items())


def _rip(topology: Topology, host: str, family: int, vips: set[str] | None = None) -> str:
    vips = topology.vips if vips is None else vips
    for i in topology.host(host).interfaces:
        for a in i.addresses:
            if a.family == family and a.ip not in vips:
                return a.ip
    raise LabError(f"real server {host!r} has no IPv{family} address on an interface")


def _in_ns(lab: Lab, host: str) -> Callable[[], None]:
    """A child's preexec function: enter ``host``'s namespace."""
    ns = lab.ns(host)
    return lambda: netns.enter_in_child(ns)


def ipvsadm(lab: Lab, *args: str, stdin: str | None = None, restore: bool = False,
            host: str | None = None) -> str:
    """Run ``ipvsadm ARGS`` in the director's namespace (or ``host``'s, e.g. a standby
    director); return stdout. ``restore``: replace the table with ``stdin``'s rules
    (``ipvsadm -R``, the table cleared first, as ``ipvsadm-restore`` does)."""
    require_ipvsadm()
    if restore:
        args, stdin = ("-R", *args), "-C\n" + (stdin or "")
    try:
        out = sh.Command("ipvsadm")(*args, _in=stdin, _err_to_out=False,
                                    _preexec_fn=_in_ns(lab, host or lab.topology.director.name))
    except sh.ErrorReturnCode as e:
        err = e.stderr.decode(errors="replace").strip() or e.stdout.decode(errors="replace")
        raise LabError(f"ipvsadm {' '.join(args)} failed: {err}") from None
    return str(out)


def configure(lab: Lab, host: str | None = None) -> None:
    """Load the topology's virtual services into their directors' IPVS tables (one
    ``ipvsadm -R`` each), or only into ``host``'s: its own services, or, for a
    standby director with none, the main director's."""
    t = lab.topology
    if t.service is None:
        return
    owners = list(dict.fromkeys(s.director for s in t.services))
    targets = owners if host is None else [host]
    for target in targets:
        of = target if target in owners else t.service.director
        rules = restore_rules(t, of)
        if rules:
            ipvsadm(lab, stdin=rules, restore=True, host=target)
        marks = nft_rules(t, of)
        if marks:
            try:
                sh.Command("ip")("netns", "exec", lab.ns(target), "nft", "-f", "-", _in=marks)
            except sh.ErrorReturnCode as e:
                raise LabError(f"nft (fwmark rules) failed: "
                               f"{e.stderr.decode(errors='replace').strip()}") from None


def set_weight(lab: Lab, rs: str, weight: int, how: str = "-e") -> None:
    """Edit (``-e``) or add (``-a``) real server ``rs`` in the lab's DR service
    with ``weight``; 0 drains it: no new connections, established ones go on."""
    svc = lab.topology.service
    assert svc is not None, "the lab has no virtual service"
    ipvsadm(lab, how, *service_spec(svc).split(), "-r",
            f"{lab.topology.primary_ip(rs)}:{svc.port}", "-g", "-w", str(weight))


def remove_dest(lab: Lab, rs: str) -> None:
    """Delete real server ``rs`` from the lab's service (``ipvsadm -d``)."""
    svc = lab.topology.service
    assert svc is not None, "the lab has no virtual service"
    ipvsadm(lab, "-d", *service_spec(svc).split(), "-r",
            f"{lab.topology.primary_ip(rs)}:{svc.port}")


@dataclass(frozen=True)
class Stats:
    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0


@dataclass(frozen=True)
class DestState:
    addr: str
    port: int
    forwarding: str
    weight: int
    active_conns: int
    inactive_conns: int
    stats: Stats
    #: The real server is the director itself (its address is local there): IPVS
    #: delivers to the local stack whatever forwarding method is configured.
    local: bool = False


@dataclass(frozen=True)
class ServiceState:
    protocol: str
    vip: str
    port: int
    fwmark: int
    scheduler: str
    persistence: int | None
    stats: Stats
    dests: list[DestState] = field(default_factory=list)

    def dest(self, addr: str) -> DestState:
        for d in self.dests:
            if d.addr == addr:
                return d
        raise KeyError(f"no real server {addr} in {self.vip}:{self.port}")


def _stats(nla: Any) -> Stats:  # a pyroute2 netlink message (untyped)
    s = nla.get_attr("IPVS_SVC_ATTR_STATS64") or nla.get_attr("IPVS_DEST_ATTR_STATS64") or \
        nla.get_attr("IPVS_SVC_ATTR_STATS") or nla.get_attr("IPVS_DEST_ATTR_STATS")
    if s is None:
        return Stats()
    g = s.get_attr
    return Stats(g("IPVS_STATS_ATTR_CONNS") or 0, g("IPVS_STATS_ATTR_INPKTS") or 0,
                 g("IPVS_STATS_ATTR_OUTPKTS") or 0, g("IPVS_STATS_ATTR_INBYTES") or 0,
                 g("IPVS_STATS_ATTR_OUTBYTES") or 0)


def _key(svc: VirtualService) -> IPVSService:
    """The IPVS key of ``svc`` (a GET asks for this one service)."""
    af = socket.AF_INET6 if svc.family == 6 else socket.AF_INET
    if svc.fwmark is not None:
        return IPVSService(af=af, fwmark=svc.fwmark)
    proto = socket.IPPROTO_TCP if svc.protocol == "tcp" else socket.IPPROTO_UDP
    return IPVSService(af=af, protocol=proto, addr=svc.vip, port=svc.port)


def read_services(lab: Lab, host: str | None = None,
                  only: VirtualService | None = None) -> list[ServiceState]:
    """The director's (or ``host``'s) IPVS table, over generic netlink, inside its
    namespace; with ``only``, that one service (a GET, not a dump of all: a scale
    lab's table holds 50,000); an empty list when the table has no such service."""
    host = host or lab.topology.director.name
    ns = lab.ns(host)
    try:  # no IPVS: say so before pyroute2 makes a socket and an event loop for nothing
        netns.read_proc(ns, "net/ip_vs")
    except OSError:
        raise LabError("IPVS is not available in this kernel (no /proc/net/ip_vs)") from None
    nl = netns.socket_in(ns, socket.AF_NETLINK, socket.SOCK_DGRAM, 16)  # NETLINK_GENERIC
    out: list[ServiceState] = []
    local: dict[str, bool] = {}

    def is_local(addr: str) -> bool:
        """Whether ``addr`` is the director's own: its route is of type local (one
        route lookup per destination address, not a dump of the director's 50,000
        VIPs)."""
        if addr not in local:
            try:
                routes = lab.ipr(host).route("get", dst=addr)
                local[addr] = any(r.get("type") == RTN_LOCAL for r in routes)
            except NetlinkError:  # unreachable from here: not local
                local[addr] = False
        return local[addr]

    try:
        ipvs = IPVS(fileno=nl.detach())
    except NetlinkError as e:
        raise LabError(f"IPVS is not available in this kernel ({e})") from None
    with ipvs:
        try:
            msgs = list(ipvs.service("dump") if only is None
                        else ipvs.service("get", service=_key(only)))
        except NetlinkError as e:
            if only is not None and e.code in (errno.ESRCH, errno.ENOENT):
                return []
            raise LabError(f"reading the IPVS table of {host} failed: {e}") from None
        for msg in msgs:
            s = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
            g = s.get_attr
            proto = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}.get(
                g("IPVS_SVC_ATTR_PROTOCOL"), str(g("IPVS_SVC_ATTR_PROTOCOL")))
            flags = (g("IPVS_SVC_ATTR_FLAGS") or {}).get("flags", 0)
            svc = ServiceState(
                protocol=proto,
                vip=str(g("IPVS_SVC_ATTR_ADDR")),
                port=g("IPVS_SVC_ATTR_PORT") or 0,
                fwmark=g("IPVS_SVC_ATTR_FWMARK") or 0,
                scheduler=g("IPVS_SVC_ATTR_SCHED_NAME"),
                persistence=g("IPVS_SVC_ATTR_TIMEOUT") if flags & IP_VS_SVC_F_PERSISTENT
                else None,
                stats=_stats(s),
            )
            key = IPVSService(af=g("IPVS_SVC_ATTR_AF"), protocol=g("IPVS_SVC_ATTR_PROTOCOL"),
                              addr=svc.vip, port=svc.port) if not svc.fwmark else \
                IPVSService(af=g("IPVS_SVC_ATTR_AF"), fwmark=svc.fwmark)
            for dmsg in ipvs.dest("dump", service=key):
                d = dmsg.get_attr("IPVS_CMD_ATTR_DEST")
                dg = d.get_attr
                svc.dests.append(DestState(
                    addr=str(dg("IPVS_DEST_ATTR_ADDR")),
                    port=dg("IPVS_DEST_ATTR_PORT") or 0,
                    forwarding=FWD_METHODS.get((dg("IPVS_DEST_ATTR_FWD_METHOD") or 0) & 7,
                                               "?"),
                    weight=dg("IPVS_DEST_ATTR_WEIGHT") or 0,
                    active_conns=dg("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0,
                    inactive_conns=dg("IPVS_DEST_ATTR_INACT_CONNS") or 0,
                    stats=_stats(d),
                    local=is_local(str(dg("IPVS_DEST_ATTR_ADDR"))),
                ))
            out.append(svc)
    return out


def read_service(lab: Lab, host: str | None = None) -> ServiceState:
    """The state of the topology's own virtual service (on the director, or ``host``)."""
    svc = lab.topology.service
    assert svc is not None
    for s in read_services(lab, host, only=svc):
        if svc.fwmark is not None and s.fwmark == svc.fwmark:
            return s
        if (s.vip, s.port, s.protocol) == (svc.vip, svc.port, svc.protocol):
            return s
    raise LabError(f"service {svc.vip}:{svc.port}/{svc.protocol} is not in the IPVS table")


@dataclass(frozen=True)
class Connection:
    """One line of /proc/net/ip_vs_conn."""

    protocol: str
    client: str
    cport: int
    vip: str
    vport: int
    dest: str
    dport: int
    state: str
    expires: int


def _hexaddr(h: str) -> str:
    if len(h) == 8 and ":" not in h:
        return str(ipaddress.IPv4Address(int(h, 16)))
    return str(ipaddress.ip_address(h))


def parse_ip_vs_conn(text: str) -> list[Connection]:
    """Parse /proc/net/ip_vs_conn (addresses in hex for IPv4, text for IPv6)."""
    conns = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 9:
            continue
        conns.append(Connection(
            protocol=f[0].lower(), client=_hexaddr(f[1]), cport=int(f[2], 16),
            vip=_hexaddr(f[3]), vport=int(f[4], 16), dest=_hexaddr(f[5]), dport=int(f[6], 16),
            state=f[7], expires=int(f[8]),
        ))
    return conns


def read_connections(lab: Lab, host: str | None = None) -> list[Connection]:
    text = netns.read_proc(lab.ns(host or lab.topology.director.name), "net/ip_vs_conn")
    return parse_ip_vs_conn(text)


def move_vip(lab: Lab, old: str, new: str) -> None:
    """Fail over: take the VIP off ``old``'s LAN interface, put it on ``new``'s and
    announce it with a gratuitous ARP (as keepalived does)."""
    svc = lab.topology.service
    assert svc is not None and svc.family == 4
    for host, op in ((old, "del"), (new, "add")):
        ipr = lab.ipr(host)
        idx = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr(op, index=idx, address=svc.vip, prefixlen=32)
    s = packet_socket(lab, new, "eth0")
    try:
        mac = lab.mac(new)
        s.send(arp_frame(1, mac, svc.vip, svc.vip))  # gratuitous: who-has VIP tell VIP
    finally:
        s.close()

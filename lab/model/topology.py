"""The topology model: plain data, no root, no kernel.

A :class:`Topology` says what a lab is made of. The builder turns it into
namespaces; reports and tests read it to know what to expect. Nothing here
touches the system, so every rule is unit-tested without root.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass, field, replace
from typing import Literal

from lab.errors import TopologyError

Role = Literal["client", "router", "director", "realserver"]
ROLES: tuple[str, ...] = ("client", "router", "director", "realserver")
Protocol = Literal["tcp", "udp"]
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The only address ranges a lab may use (RFC 5737 and RFC 3849).
DOC_RANGES = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
#: RFC 2544's benchmarking range (198.18.0.0/15, 131,072 addresses): where a scale lab
#: (:func:`lab.model.scale.many_services`) puts VIPs that do not fit the documentation
#: ranges. Allowed only in a topology that waives :data:`SCALE_RANGE_WAIVER`.
SCALE_RANGE = ipaddress.ip_network("198.18.0.0/15")
SCALE_RANGE_WAIVER = "scale-range"
#: Schedulers ipvsadm knows (see ipvsadm(8)).
SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos",
)
IFNAMSIZ = 16  # including the trailing NUL: names have at most 15 characters
_NAME_RE = re.compile(r"[a-z][a-z0-9]{0,9}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_SYSCTL_RE = re.compile(r"net\.(ipv4|ipv6|core)\.[A-Za-z0-9_.-]+")
_CONF_RE = re.compile(r"net\.(ipv4|ipv6)\.conf\.([^.]+)\.([A-Za-z0-9_]+)")


def in_doc_range(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *,
                 scale: bool = False) -> bool:
    """Whether ``ip`` is in a documentation range (or, with ``scale``, in
    :data:`SCALE_RANGE`)."""
    return any(ip in net for net in DOC_RANGES) or (scale and ip in SCALE_RANGE)


def subnet_of(net: IPNet, other: IPNet) -> bool:
    """``net.subnet_of(other)`` for networks of either family: False across families
    (where ``subnet_of`` raises TypeError)."""
    return net.network_address in other and net.broadcast_address in other


def net_in_doc_range(net: IPNet, *, scale: bool = False) -> bool:
    """Whether all of ``net`` lies in one documentation range (or, with ``scale``, in
    :data:`SCALE_RANGE`)."""
    return any(subnet_of(net, d) for d in DOC_RANGES) or (scale and subnet_of(net, SCALE_RANGE))


#: (a lab reads its addresses' parts thousands of times: parse each text once; room
#: for a cluster of tens of thousands of addresses: a smaller LRU thrashes, each miss
#: a parse, which made the import of 6k addresses 5.4x that of 1.5k)
#: 131,072 entries: a scale lab's 50,000 VIPs and a collected cluster's addresses fit.
@functools.lru_cache(maxsize=1 << 17)
def _interface(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """``ipaddress.ip_interface(cidr)``, parsed once; a dotted quad with a prefix length
    through ``inet_pton`` (strict as ipaddress is: no short forms, no leading zeros),
    about twice as fast: a scale lab parses 50,000 VIPs."""
    ip, slash, plen = cidr.partition("/")
    if slash and plen.isascii() and plen.isdigit() and len(plen) <= 2 and "." in ip:
        try:
            n = int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
        except OSError:
            pass
        else:
            return ipaddress.IPv4Interface((n, int(plen)))
    return ipaddress.ip_interface(cidr)


def ip_interface(cidr: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """``ipaddress.ip_interface(cidr)`` from the model's cache (see :func:`_interface`)."""
    return _interface(cidr)


@functools.lru_cache(maxsize=1 << 17)
def ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``ipaddress.ip_address(text)``, parsed once: a collected cluster of 5,000
    services names each VIP and real server in several files, tens of thousands of
    parses otherwise (the objects are immutable, so sharing them is safe)."""
    return ipaddress.ip_address(text)


@dataclass(frozen=True)
class Address:
    """An address with its prefix, e.g. ``192.0.2.100/32``, and its scope."""

    cidr: str
    scope: Literal["global", "host", "link"] = "global"

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return _interface(self.cidr)

    @property
    def ip(self) -> str:
        return str(self.interface.ip)

    @property
    def prefixlen(self) -> int:
        return self.interface.network.prefixlen

    @property
    def family(self) -> int:
        return self.interface.version


@dataclass
class Interface:
    """A host's interface, one end of a veth whose other end is on ``segment``'s bridge."""

    name: str
    segment: str
    addresses: list[Address] = field(default_factory=list)
    mtu: int | None = None
    #: ``veth`` (on ``segment``) or ``dummy`` (no segment, NOARP: a VIP holder).
    kind: Literal["veth", "dummy"] = "veth"


@dataclass(frozen=True)
class Route:
    """``dst`` ("default" or a prefix) via a gateway, or on-link out of ``dev``."""

    dst: str
    via: str | None = None
    dev: str | None = None


@dataclass
class Host:
    name: str
    role: Role
    interfaces: list[Interface] = field(default_factory=list)
    #: Addresses on ``lo`` (the VIP on a real server).
    lo: list[Address] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    #: Full sysctl keys, e.g. ``net.ipv4.conf.eth0.arp_ignore`` -> ``"1"``.
    #: They override the lab's pinned defaults (see lab.builder.sysctl).
    sysctls: dict[str, str] = field(default_factory=dict)
    #: Dummy interfaces (NOARP, on no segment), e.g. holding a VIP as ``lo`` would.
    dummies: list[Interface] = field(default_factory=list)
    #: The name the host has in the cluster it was collected from (``drlab import``).
    label: str = ""
    #: Collected hosts this one stands for (identical real servers folded into it).
    represents: list[str] = field(default_factory=list)
    #: The kernel release the host ran when collected (``uname -r``; ``--anonymize``
    #: keeps its version only, e.g. ``6.1.0``). Empty: not recorded.
    kernel: str = ""

    def interface(self, name: str) -> Interface:
        for i in [*self.interfaces, *self.dummies]:
            if i.name == name:
                return i
        raise KeyError(f"host {self.name!r} has no interface {name!r}")

    def addresses(self) -> list[Address]:
        return ([a for i in self.interfaces for a in i.addresses] + list(self.lo)
                + [a for i in self.dummies for a in i.addresses])

    @property
    def shown(self) -> str:
        """The name people know the host by: its collected name, else its lab name."""
        return self.label or self.name


def kernel_series(release: str) -> str:
    """A kernel release's series, major.minor (``6.1.0-57-amd64`` -> ``6.1``); empty
    when it names none."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return f"{m.group(1)}.{m.group(2)}" if m else ""


@dataclass(frozen=True)
class Segment:
    """An L2 segment: a bridge in a namespace of its own."""

    name: str


#: How a real server's service listens: on every address, on the VIP, only on
#: another address (the RIP: connections to the VIP are refused), or not at all.
LISTEN = ("any", "vip", "rip", "none")


@dataclass(frozen=True)
class RealServer:
    host: str
    weight: int = 1
    listen: Literal["any", "vip", "rip", "none"] = "any"


@dataclass
class VirtualService:
    """An IPVS virtual service in DR mode (``ipvsadm -A ... -g``)."""

    vip: str
    port: int
    director: str
    real_servers: list[RealServer]
    protocol: Protocol = "tcp"
    scheduler: str = "rr"
    persistence: int | None = None  # seconds, ipvsadm -p
    #: ipvsadm -M: clients in one such netmask share the persistent template.
    persistence_netmask: str | None = None
    #: A firewall-mark service (ipvsadm -f): the director marks packets for the
    #: VIP on ``port`` and ``extra_ports`` (nftables) and IPVS balances by mark.
    fwmark: int | None = None
    extra_ports: list[int] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [self.port, *self.extra_ports]

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.vip).version

    @property
    def key(self) -> str:
        """``192.0.2.100:80/tcp`` (``fwmark 7 (192.0.2.100)``): how people name it."""
        if self.fwmark is not None:
            return f"fwmark {self.fwmark} ({self.vip})"
        vip = f"[{self.vip}]" if self.family == 6 else self.vip
        return f"{vip}:{self.port}/{self.protocol}"


@dataclass
class Topology:
    name: str
    hosts: list[Host]
    segments: list[Segment]
    #: The IPVS virtual services (DR), each on its director; the first is the
    #: lab's main one (:attr:`service`), which the probes look at.
    services: list[VirtualService] = field(default_factory=list)
    #: Names of validation rules deliberately waived, so that a scenario can
    #: build a known-broken lab (e.g. ``{"vip-lo-prefix"}``).
    waive: frozenset[str] = frozenset()
    #: Director host -> the keepalived.conf it runs (VRRP holds the VIP, keepalived
    #: loads IPVS). Empty: the lab configures the director itself.
    keepalived: dict[str, str] = field(default_factory=dict)
    #: The keepalived configs may run programs (notify, vrrp_script, MISC_CHECK ...).
    #: Never read from a file: set by who loads it (``--keepalived FILE`` names the
    #: user's own files; ``--allow-scripts`` opts in for a topology or collected
    #: directory). Without it the role refuses a config that would run one.
    allow_scripts: bool = False

    # -- lookups --------------------------------------------------------
    @property
    def service(self) -> VirtualService | None:
        """The lab's main service (the first): what the probes look at."""
        return self.services[0] if self.services else None

    @property
    def main_service(self) -> VirtualService:
        """:attr:`service` where a lab must have one (a probe, a scenario): KeyError if not."""
        if self.service is None:
            raise KeyError(f"topology {self.name!r} has no virtual service")
        return self.service

    @property
    def vips(self) -> set[str]:
        return {s.vip for s in self.services}

    def focused(self, svc: VirtualService) -> Topology:
        """The same topology (the same hosts) with ``svc`` as its main service."""
        return replace(self, services=[svc, *(s for s in self.services if s is not svc)])

    @property
    def kernel(self) -> str:
        """The kernel release the cluster ran when collected: its (first) director's,
        else the first host's that recorded one; empty if none did."""
        for h in sorted(self.hosts, key=lambda h: h.role != "director"):
            if h.kernel:
                return h.kernel
        return ""

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"topology {self.name!r} has no host {name!r}")

    def hosts_by_role(self, role: Role) -> list[Host]:
        return [h for h in self.hosts if h.role == role]

    @property
    def director(self) -> Host:
        return self.host(self.main_service.director)

    @property
    def real_servers(self) -> list[Host]:
        if self.service is None:
            return []
        return [self.host(r.host) for r in self.service.real_servers]

    def lan_iface(self, host: str) -> str:
        """The name of ``host``'s interface on the director's segment (its DR LAN)."""
        dsegs = {i.segment for i in self.director.interfaces}
        for i in self.host(host).interfaces:
            if i.segment in dsegs:
                return i.name
        raise LookupError(f"{host} has no interface on the director's segment")

    def primary_ip(self, host: str) -> str:
        """The first address of the host's first interface (the RIP/DIP/CIP)."""
        for i in self.host(host).interfaces:
            for a in i.addresses:
                if a.ip not in self.vips:
                    return a.ip
        raise KeyError(f"host {host!r} has no address")

    def owner_of(self, ip: str) -> str | None:
        """The host whose interface (not lo) carries ``ip`` first, if any."""
        for h in self.hosts:
            for i in h.interfaces:
                if any(a.ip == ip for a in i.addresses):
                    return h.name
        return None

    # -- validation -----------------------------------------------------
    def validate(self) -> Topology:
        """Raise :class:`TopologyError` listing every problem; return self if valid."""
        problems = _validate(self)
        if problems:
            raise TopologyError(problems)
        return self

    def warnings(self) -> list[str]:
        """Legal but suspicious configurations (DR will not work as usual)."""
        out: list[str] = []
        # (each host's segments and addresses once: a scale lab has 50,000 services)
        byname = {h.name: h for h in self.hosts}
        segs = {h.name: {i.segment for i in h.interfaces} for h in self.hosts}
        held: dict[str, set[str]] = {}
        for svc in self.services:
            if svc.director not in byname:
                continue
            dsegs = segs[svc.director]
            for rs in svc.real_servers:
                h = byname.get(rs.host)
                if h is None:
                    continue
                if not dsegs & segs[h.name]:
                    out.append(f"real server {h.name!r} shares no segment with the director: "
                               "DR traffic cannot reach it")
                if h.name not in held:
                    held[h.name] = {a.ip for a in h.addresses()}
                if svc.vip not in held[h.name]:
                    out.append(f"real server {h.name!r} has no VIP {svc.vip} on lo: "
                               "it will drop the requests IPVS sends it")
        return list(dict.fromkeys(out))


#: Waiver for a user's own cluster (a keepalived.conf, a collected host): its
#: addresses live only inside the lab's isolated namespaces, so any are allowed.
ANY_ADDRESS = "any-address"


def _validate(t: Topology) -> list[str]:
    p: list[str] = []
    anywhere = ANY_ADDRESS in t.waive
    scale = SCALE_RANGE_WAIVER in t.waive
    for host, conf in t.keepalived.items():
        if not any(h.name == host and h.role == "director" for h in t.hosts):
            p.append(f"keepalived: {host!r} is not a director of the topology")
        if not isinstance(conf, str) or not conf.strip():
            p.append(f"keepalived: {host!r}: empty config")
    seg_names = [s.name for s in t.segments]
    for dup in sorted({n for n in seg_names if seg_names.count(n) > 1}):
        p.append(f"duplicate segment {dup!r}")
    for s in t.segments:
        if not _NAME_RE.fullmatch(s.name):
            p.append(f"segment name {s.name!r} must match [a-z][a-z0-9]{{0,9}}")
    host_names = [h.name for h in t.hosts]
    for dup in sorted({n for n in host_names if host_names.count(n) > 1}):
        p.append(f"duplicate host {dup!r}")
    if not t.hosts:
        p.append("no hosts")

    seen_ips: dict[str, str] = {}
    vips = t.vips
    for h in t.hosts:
        where = f"host {h.name!r}"
        if not _NAME_RE.fullmatch(h.name):
            p.append(f"{where}: name must match [a-z][a-z0-9]{{0,9}}")
        if h.role not in ROLES:
            p.append(f"{where}: unknown role {h.role!r} (one of {', '.join(ROLES)})")
        ifnames = [i.name for i in h.interfaces]
        for dup in sorted({n for n in ifnames if ifnames.count(n) > 1}):
            p.append(f"{where}: duplicate interface {dup!r}")
        nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for i in h.interfaces:
            iw = f"{where}: interface {i.name!r}"
            if len(i.name) >= IFNAMSIZ:
                p.append(f"{iw}: name is {len(i.name)} characters, "
                         f"over the kernel's limit of {IFNAMSIZ - 1}")
            elif not _IFNAME_RE.fullmatch(i.name) or i.name in ("lo", "all", "default"):
                p.append(f"{iw}: invalid interface name")
            if i.segment not in seg_names:
                p.append(f"{iw}: unknown segment {i.segment!r}")
            if i.mtu is not None and not 68 <= i.mtu <= 65535:
                p.append(f"{iw}: mtu {i.mtu} out of range 68..65535")
            for a in i.addresses:
                err = _check_address(a, f"{iw}: address", anywhere, scale)
                if err:
                    p.append(err)
                    continue
                nets.append(a.interface.network)
                if a.ip in seen_ips and not (a.ip in vips and "vip-duplicate" in t.waive):
                    p.append(f"{iw}: duplicate address {a.ip} (also on {seen_ips[a.ip]})")
                seen_ips.setdefault(a.ip, f"host {h.name!r}")
        for a in h.lo:
            err = _check_address(a, f"{where}: lo address", anywhere, scale)
            if err:
                p.append(err)
                continue
            if a.ip in vips:
                full = 32 if a.family == 4 else 128
                if a.prefixlen != full and "vip-lo-prefix" not in t.waive:
                    p.append(f"{where}: VIP {a.cidr} on lo must be /{full} "
                             "(a wider prefix makes the whole subnet local)")
            elif a.ip in seen_ips:
                p.append(f"{where}: lo address {a.ip} duplicates one on {seen_ips[a.ip]}")
            else:
                seen_ips[a.ip] = f"host {h.name!r}"
        dnames = [i.name for i in h.dummies]
        for i in h.dummies:
            iw = f"{where}: dummy {i.name!r}"
            if len(i.name) >= IFNAMSIZ or not _IFNAME_RE.fullmatch(i.name) \
                    or i.name in ("lo", "all", "default") or i.name in ifnames \
                    or dnames.count(i.name) > 1:
                p.append(f"{iw}: invalid or duplicate interface name")
            for a in i.addresses:
                err = _check_address(a, f"{iw}: address", anywhere, scale)
                if err:
                    p.append(err)
                elif a.ip not in vips and a.ip in seen_ips:
                    p.append(f"{iw}: address {a.ip} duplicates one on {seen_ips[a.ip]}")
                else:
                    seen_ips.setdefault(a.ip, f"host {h.name!r}")
        ifnames = ifnames + dnames
        for r in h.routes:
            rw = f"{where}: route {r.dst} " + (f"via {r.via}" if r.via else f"dev {r.dev}")
            if (r.via is None) == (r.dev is None):
                p.append(f"{rw}: give exactly one of via (a gateway) or dev (on-link)")
                continue
            if r.dev is not None and r.dev not in ifnames:
                p.append(f"{rw}: no interface {r.dev!r} on this host")
            try:
                if r.dst != "default":
                    dnet = ipaddress.ip_network(r.dst, strict=True)
                    if not anywhere and not net_in_doc_range(dnet, scale=scale):
                        p.append(f"{rw}: destination outside the documentation ranges")
                via = ipaddress.ip_address(r.via) if r.via else None
            except ValueError as e:
                p.append(f"{rw}: {e}")
                continue
            if via is not None and not any(via in n for n in nets):
                p.append(f"{rw}: gateway {r.via} is not on any of the host's subnets")
        for key, value in h.sysctls.items():
            err = check_sysctl(key, value, ifnames)
            if err:
                p.append(f"{where}: {err}")

    seen_keys: set[tuple[object, ...]] = set()
    byname = {h.name: h for h in t.hosts}
    #: director -> the addresses on its interfaces and dummies (once each: a scale lab
    #: has 50,000 services on one director)
    holds: dict[str, set[str]] = {}
    for n, svc in enumerate(t.services):
        sw = "service" if len(t.services) == 1 else f"services[{n}] ({svc.vip}:{svc.port})"
        skey: tuple[object, ...] = (svc.fwmark, svc.family) if svc.fwmark is not None \
            else (svc.vip, svc.port, svc.protocol)
        if skey in seen_keys:
            p.append(f"{sw}: the same service is defined twice")
        seen_keys.add(skey)
        try:
            vip_ip = ipaddress.ip_address(svc.vip)
            if not anywhere and not in_doc_range(vip_ip, scale=scale):
                p.append(f"{sw}: VIP {svc.vip} is outside the documentation ranges "
                         "(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)")
        except ValueError:
            p.append(f"{sw}: VIP {svc.vip!r} is not an IP address")
        if not (isinstance(svc.port, int) and 1 <= svc.port <= 65535):
            p.append(f"{sw}: port {svc.port!r} out of range 1..65535")
        if svc.protocol not in ("tcp", "udp"):
            p.append(f"{sw}: protocol {svc.protocol!r} must be tcp or udp")
        if svc.scheduler not in SCHEDULERS:
            p.append(f"{sw}: unknown scheduler {svc.scheduler!r} (one of {', '.join(SCHEDULERS)})")
        if svc.fwmark is not None and not (isinstance(svc.fwmark, int)
                                           and 1 <= svc.fwmark <= 0xFFFFFFFF):
            p.append(f"{sw}: fwmark {svc.fwmark!r} out of range 1..4294967295")
        if svc.extra_ports and svc.fwmark is None:
            p.append(f"{sw}: extra_ports need a fwmark service (one port per plain service)")
        for ep in svc.extra_ports:
            if not (isinstance(ep, int) and 1 <= ep <= 65535) or ep == svc.port:
                p.append(f"{sw}: extra port {ep!r} out of range 1..65535 or repeated")
        if svc.persistence is not None and not 1 <= svc.persistence <= 2678400:
            p.append(f"{sw}: persistence {svc.persistence} out of range 1..2678400 s")
        if svc.persistence_netmask is not None:
            if svc.persistence is None:
                p.append(f"{sw}: persistence_netmask needs persistence")
            try:
                ipaddress.ip_network(f"0.0.0.0/{svc.persistence_netmask}"
                                     if svc.family == 4 else f"::/{svc.persistence_netmask}")
            except ValueError:
                p.append(f"{sw}: persistence_netmask {svc.persistence_netmask!r} is not a "
                         "netmask (like 255.255.255.0, or a prefix length for IPv6)")
        d = byname.get(svc.director)
        if d is None:
            p.append(f"{sw}: unknown director host {svc.director!r}")
        elif d.role != "director":
            p.append(f"{sw}: host {d.name!r} is a {d.role!r}, not a director")
        elif t.keepalived:
            for h in t.hosts:
                if h.role == "director" and any(a.ip == svc.vip for i in h.interfaces
                                                for a in i.addresses):
                    p.append(f"{sw}: director {h.name!r} holds the VIP {svc.vip} on an "
                             "interface, but keepalived places it (VRRP)")
        else:
            if d.name not in holds:
                holds[d.name] = {a.ip for i in [*d.interfaces, *d.dummies] for a in i.addresses}
            if svc.vip not in holds[d.name]:
                p.append(f"{sw}: director {d.name!r} does not hold the VIP {svc.vip} "
                         "on an interface")
        if not svc.real_servers:
            p.append(f"{sw}: no real servers")
        rs_names = [rs.host for rs in svc.real_servers]
        for dup in sorted({n for n in rs_names if rs_names.count(n) > 1}):
            p.append(f"{sw}: real server {dup!r} listed twice")
        for rs in svc.real_servers:
            rh = byname.get(rs.host)
            if rh is None:
                p.append(f"{sw}: unknown real server host {rs.host!r}")
            elif rh.role not in ("realserver", "director"):
                p.append(f"{sw}: host {rh.name!r} is a {rh.role!r}, not a realserver")
            if rs.listen not in LISTEN:
                p.append(f"{sw}: real server {rs.host!r}: listen {rs.listen!r} must be one of "
                         f"{', '.join(LISTEN)}")
            if not (isinstance(rs.weight, int) and 0 <= rs.weight <= 65535):
                p.append(f"{sw}: real server {rs.host!r}: weight {rs.weight!r} out of range "
                         "0..65535")
    return p


def _check_address(a: Address, where: str, anywhere: bool = False,
                   scale: bool = False) -> str | None:
    err = _address_error(a.cidr, a.scope, anywhere, scale)
    return None if err is None else f"{where} {err}"


@functools.lru_cache(maxsize=1 << 17)
def _address_error(cidr: str, scope: str, anywhere: bool, scale: bool) -> str | None:
    """What is wrong with an address (after its place, which the caller says), or None.
    (Cached: a scale lab's real servers hold the same 50,000 VIPs each.)"""
    try:
        iface = _interface(cidr)
    except ValueError:
        return f"{cidr!r} is not an address with a prefix (like 192.0.2.1/24)"
    if "/" not in cidr:
        return f"{cidr!r} needs a prefix length (like 192.0.2.1/24)"
    if not anywhere and not in_doc_range(iface.ip, scale=scale):
        return (f"{cidr} is outside the documentation ranges "
                "(192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32)")
    if scope not in ("global", "host", "link"):
        return f"{cidr}: scope {scope!r} must be global, host or link"
    return None


def check_sysctl(key: str, value: object, ifnames: list[str] | None = None) -> str | None:
    """Return an error for a sysctl the lab cannot set, else None.

    Only ``net.*`` keys are allowed (they are per network namespace); a
    ``net.ipv4.conf.<dev>.*`` key must name ``all``, ``default``, ``lo`` or
    one of the host's interfaces. Values are integers (or space-separated
    integers, as some sysctls take).
    """
    if not _SYSCTL_RE.fullmatch(key):
        return (f"sysctl {key!r}: only per-namespace net.ipv4.*, net.ipv6.* and "
                "net.core.* keys can be set")
    m = _CONF_RE.fullmatch(key)
    if m and ifnames is not None:
        dev = m.group(2)
        if dev not in ("all", "default", "lo", *ifnames):
            return f"sysctl {key!r}: no interface {dev!r} on this host"
    text = str(value)
    if isinstance(value, bool) or not re.fullmatch(r"-?\d+( -?\d+)*", text):
        return f"sysctl {key!r}: value {text!r} is not an integer"
    return None

"""A collected cluster -> a lab topology (``drlab import``): pure, reads files only.

``scripts/collect`` writes one directory per LVS director and real server::

    DIR/<hostname>/ip-addr.json      ip -j addr show            (required)
                   ip-link.json      ip -j -d link show         (interface kinds, NOARP)
                   ip-route.json     ip -j route show
                   ip6-route.json    ip -j -6 route show
                   sysctl.txt        key = value
                   ipvsadm-save.txt  ipvsadm-save -n            (where there is an IPVS table)
                   listen.txt        ss -Hltnu
                   keepalived.conf, uname.txt, collect.txt, skipped.txt

:func:`import_cluster` turns such directories into TOML-shaped data that
:func:`lab.model.topology_from_dict` accepts: the directors and real servers
with their interfaces, VIPs (on ``lo``, on dummies, on LAN interfaces), routes
and the raw ARP/rp_filter/IPVS sysctls (the twin's kernel computes the
effective values from them, as production does), every DR service of the
IPVS tables, where each real server really listens, a lab client on the
director's LAN, and identical real servers folded into two representatives.
Everything it inferred, folded or left out is said in :attr:`Imported.notes`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import TopologyError
from lab.model.anonymize import anonymize_topology
from lab.model.keepalived import KaConfig, Node, parse_tree, strip_real_servers
from lab.model.keepalived import parse as parse_keepalived
from lab.model.topology import ANY_ADDRESS, DOC_RANGES, SCHEDULERS, in_doc_range

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
IPIface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The roles ``--role NAME=ROLE`` may give.
IMPORT_ROLES = ("director", "realserver")
#: Per-interface ARP and reverse-path sysctls kept as collected.
CONF_KEYS = ("arp_ignore", "arp_announce", "rp_filter", "arp_filter", "accept_local")
#: IPVS sysctls kept on directors.
VS_KEYS = ("conn_reuse_mode", "expire_nodest_conn", "expire_quiescent_template", "sloppy_tcp",
           "schedule_icmp", "conntrack", "snat_reroute")
#: The files a host directory may hold (one of them marks a directory as a host's).
HOST_FILES = ("ip-addr.json", "ip-link.json", "ip-route.json", "ip6-route.json", "sysctl.txt",
              "ipvsadm-save.txt", "listen.txt", "keepalived.conf", "uname.txt", "collect.txt",
              "skipped.txt")
CLIENT = "client"
_NAME_MAX = 10


@dataclass
class Imported:
    """What :func:`import_cluster` made of a collected cluster."""

    #: TOML-shaped data: :func:`lab.model.topology_from_dict` accepts it.
    topology: dict[str, Any]
    #: What the import inferred, folded or skipped, in words (the CLI prints them).
    notes: list[str]
    #: Lab host name -> collected host name.
    names: dict[str, str]


# -- reading one host ----------------------------------------------------------------

@dataclass
class Addr:
    """An address as collected: on which interface, with its prefix and scope."""

    ip: IPIface
    scope: str = "global"

    @property
    def addr(self) -> IP:
        return self.ip.ip

    def data(self) -> Any:
        return str(self.ip) if self.scope == "global" else {"cidr": str(self.ip),
                                                             "scope": self.scope}


@dataclass
class Link:
    name: str
    kind: str = ""          # linkinfo.info_kind ("" for a physical or unknown one)
    noarp: bool = False
    mtu: int | None = None
    addrs: list[Addr] = field(default_factory=list)


@dataclass
class RealEntry:
    ip: IP
    port: int
    fwd: str                # "g" (DR), "m" (NAT), "i" (tunnel)
    weight: int
    where: str


@dataclass
class Service:
    """One IPVS virtual service, from ipvsadm-save or a keepalived virtual_server."""

    protocol: str           # tcp, udp (or sctp: not supported)
    vip: IP | None
    port: int
    fwmark: int | None
    family: int
    scheduler: str
    where: str
    persistence: int | None = None
    netmask: str | None = None
    extras: list[str] = field(default_factory=list)   # options the lab does not reproduce
    reals: list[RealEntry] = field(default_factory=list)

    @property
    def key(self) -> tuple[Any, ...]:
        if self.fwmark is not None:
            return ("fwmark", self.fwmark, self.family)
        return (self.protocol, str(self.vip), self.port)

    @property
    def shown(self) -> str:
        if self.fwmark is not None:
            return f"fwmark {self.fwmark}" + (f" ({self.vip})" if self.vip else "")
        vip = f"[{self.vip}]" if self.family == 6 else str(self.vip)
        return f"{vip}:{self.port}/{self.protocol}"

    def table(self) -> tuple[Any, ...]:
        return (self.scheduler, self.persistence, self.netmask, tuple(self.extras),
                tuple(sorted((str(r.ip), r.port, r.fwd, r.weight) for r in self.reals)))


@dataclass
class Listener:
    protocol: str
    addr: IP | None         # None: a wildcard (0.0.0.0, ::, *)
    family: int | None      # of the wildcard; None for *
    port: int


@dataclass
class Collected:
    """One collected host, parsed."""

    path: Path
    name: str
    links: list[Link]
    routes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (file, route)
    sysctls: dict[str, str] = field(default_factory=dict)
    ipvs: list[Service] | None = None
    keepalived: KaConfig | None = None
    listen: list[Listener] | None = None
    kernel: str = ""
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def addresses(self) -> set[IP]:
        return {a.addr for ln in self.links for a in ln.addrs}


def _bad(where: str, msg: str) -> TopologyError:
    return TopologyError(f"{where}: {msg}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as e:
        raise _bad(str(path), f"cannot read: {e.strerror or e}") from None


def _json(path: Path) -> list[Any]:
    text = _read(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _bad(f"{path}:{e.lineno}", f"not valid JSON: {e.msg}") from None
    if not isinstance(data, list):
        raise _bad(f"{path}:1", "expected a JSON list (the output of ip -j)")
    for n, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise _bad(str(path), f"entry {n}: expected a JSON object")
    return data


def _scope(v: Any) -> str:
    return v if v in ("global", "host", "link") else "global"


def _links(hdir: Path) -> tuple[list[Link], list[str]]:
    missing = []
    path = hdir / "ip-addr.json"
    if not path.is_file():
        raise _bad(str(path), "missing (every collected host has one: ip -j addr show)")
    kinds: dict[str, dict[str, Any]] = {}
    lpath = hdir / "ip-link.json"
    if lpath.is_file():
        kinds = {str(e.get("ifname")): e for e in _json(lpath)}
    else:
        missing.append("ip-link.json")
    links = []
    for n, e in enumerate(_json(path)):
        name = e.get("ifname")
        if not isinstance(name, str) or not name:
            raise _bad(str(path), f"entry {n}: no ifname")
        info = kinds.get(name, e)
        linkinfo = info.get("linkinfo") if isinstance(info.get("linkinfo"), dict) else {}
        flags = list(e.get("flags") or []) + list(info.get("flags") or [])
        kind = str(linkinfo.get("info_kind") or "")
        if name == "lo" or e.get("link_type") == "loopback":
            kind = "loopback"
        link = Link(name, kind, "NOARP" in flags,
                    e.get("mtu") if isinstance(e.get("mtu"), int) else None)
        for k, a in enumerate(e.get("addr_info") or []):
            if not isinstance(a, dict) or "local" not in a:
                continue
            try:
                ip = ipaddress.ip_interface(f"{a['local']}/{a.get('prefixlen', '')}")
            except ValueError:
                raise _bad(str(path), f"entry {n} ({name}): addr_info[{k}]: bad address "
                                      f"{a.get('local')!r}/{a.get('prefixlen')!r}") from None
            link.addrs.append(Addr(ip, _scope(a.get("scope"))))
        # the kernel lists an interface's IPv6 addresses newest first (IPv4 in the
        # order added, the primary first): back to the order they were configured in,
        # so that the twin adds them in that order and lists them as collected
        link.addrs = ([a for a in link.addrs if a.addr.version == 4]
                      + [a for a in link.addrs if a.addr.version == 6][::-1])
        links.append(link)
    return links, missing


def _sysctls(path: Path) -> dict[str, str]:
    out = {}
    for n, raw in enumerate(_read(path).splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if not eq or not key or not re.fullmatch(r"[A-Za-z0-9_./-]+", key):
            raise _bad(f"{path}:{n}", f"expected `key = value`, got {raw.strip()[:60]!r}")
        out[key] = " ".join(value.split())
    return out


_SVC_OPTS = {"-t": "tcp", "--tcp-service": "tcp", "-u": "udp", "--udp-service": "udp",
             "--sctp-service": "sctp", "-f": "fwmark", "--fwmark-service": "fwmark"}
_FWD = {"-g": "g", "--gatewaying": "g", "-m": "m", "--masquerading": "m", "-i": "i",
        "--ipip": "i"}


def _addrport(word: str, where: str, need_port: bool = True) -> tuple[IP, int]:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?|([0-9.]+)(?::(\d+))?|([0-9A-Fa-f:]+)",
                     word)
    if not m:
        raise _bad(where, f"{word!r} is not ADDRESS:PORT")
    host = m.group(1) or m.group(3) or m.group(5)
    port = m.group(2) or m.group(4)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise _bad(where, f"{host!r} is not an IP address") from None
    if port is None and need_port:
        raise _bad(where, f"{word!r}: no port")
    p = int(port or 0)
    if p > 65535:
        raise _bad(where, f"port {p} out of range")
    return ip, p


def _ipvsadm(path: Path) -> list[Service]:
    """``ipvsadm-save -n``, line by line (see ipvsadm(8))."""
    services: dict[tuple[Any, ...], Service] = {}
    for n, raw in enumerate(_read(path).splitlines(), 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{path}:{n}"
        cmd = words.pop(0)
        if cmd not in ("-A", "--add-service", "-a", "--add-server"):
            raise _bad(where, f"expected -A or -a, got {cmd!r}")
        adding = cmd in ("-A", "--add-service")
        proto: str | None = None
        vip: IP | None = None
        port = 0
        fwmark: int | None = None
        v6 = False
        sched, persist, netmask, extras = "wlc", None, None, []
        real: tuple[IP, int] | None = None
        fwd, weight = "g", 1

        def value(opt: str, words: list[str] = words, where: str = where) -> str:
            if not words:
                raise _bad(where, f"{opt} needs a value")
            return words.pop(0)

        def number(opt: str, where: str = where) -> int:
            v = value(opt)
            if not v.isdigit():
                raise _bad(where, f"{opt} {v!r}: expected a number")
            return int(v)

        while words:
            opt = words.pop(0)
            if opt in _SVC_OPTS:
                proto = _SVC_OPTS[opt]
                if proto == "fwmark":
                    fwmark = number(opt)
                else:
                    vip, port = _addrport(value(opt), where)
            elif opt in ("-6", "--ipv6"):
                v6 = True
            elif adding and opt in ("-s", "--scheduler"):
                sched = value(opt)
                if sched not in SCHEDULERS:
                    raise _bad(where, f"unknown scheduler {sched!r}")
            elif adding and opt in ("-p", "--persistent"):
                persist = int(words.pop(0)) if words and words[0].isdigit() else 300
            elif adding and opt in ("-M", "--netmask"):
                netmask = value(opt)
            elif adding and opt in ("-b", "--sched-flags"):
                extras.append(f"scheduler flags {value(opt)}")
            elif adding and opt == "--pe":
                extras.append(f"persistence engine {value(opt)}")
            elif adding and opt in ("-o", "--ops"):
                extras.append("one-packet scheduling (-o)")
            elif not adding and opt in ("-r", "--real-server"):
                real = _addrport(value(opt), where, need_port=False)
            elif not adding and opt in _FWD:
                fwd = _FWD[opt]
            elif not adding and opt in ("-w", "--weight"):
                weight = number(opt)
            elif not adding and opt in ("-x", "--u-threshold", "-y", "--l-threshold",
                                        "--tun-type", "--tun-port"):
                value(opt)
            elif not adding and opt in ("--tun-nocsum", "--tun-csum", "--tun-remcsum"):
                pass
            else:
                raise _bad(where, f"unknown option {opt}")
        if proto is None:
            raise _bad(where, "no service (-t, -u or -f)")
        family = 6 if v6 or (vip is not None and vip.version == 6) or (
            fwmark is not None and real is not None and real[0].version == 6) else 4
        key = (("fwmark", fwmark, family) if fwmark is not None
               else (proto, str(vip), port))
        if adding:
            if key in services:
                raise _bad(where, "service added twice")
            services[key] = Service(proto if fwmark is None else "tcp", vip, port, fwmark,
                                    family, sched, where, persist, netmask, extras)
            continue
        if key not in services:
            raise _bad(where, "real server of a service not added before (-A)")
        if real is None:
            raise _bad(where, "-a without -r ADDRESS")
        services[key].reals.append(RealEntry(real[0], real[1], fwd, weight, where))
    return list(services.values())


def _listen(path: Path) -> tuple[list[Listener], int]:
    out, bad = [], 0
    for raw in _read(path).splitlines():
        words = raw.split()
        if not words:
            continue
        if len(words) < 5 or words[0] not in ("tcp", "udp"):
            bad += 1
            continue
        local = words[4]
        host, _, port = local.rpartition(":")
        if not port.isdigit():
            if port != "*":
                bad += 1
            continue
        host = host.split("%", 1)[0].strip("[]")
        if host == "*":
            out.append(Listener(words[0], None, None, int(port)))
            continue
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            bad += 1
            continue
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_unspecified:
            out.append(Listener(words[0], None, ip.version, int(port)))
        else:
            out.append(Listener(words[0], ip, ip.version, int(port)))
    return out, bad


def _keyvalues(path: Path) -> dict[str, str]:
    out = {}
    for line in _read(path).splitlines():
        k, eq, v = line.partition("=")
        if eq:
            out[k.strip()] = v.strip()
    return out


def read_host(hdir: Path) -> Collected:
    """One host's directory, parsed (errors name the file and line)."""
    links, missing = _links(hdir)
    meta = _keyvalues(hdir / "collect.txt") if (hdir / "collect.txt").is_file() else {}
    h = Collected(hdir, meta.get("hostname") or hdir.name, links, missing=missing)
    for fname in ("ip-route.json", "ip6-route.json"):
        p = hdir / fname
        if p.is_file():
            h.routes += [(str(p), r) for r in _json(p)]
        elif fname == "ip-route.json":
            h.missing.append(fname)
    if (hdir / "sysctl.txt").is_file():
        h.sysctls = _sysctls(hdir / "sysctl.txt")
    else:
        h.missing.append("sysctl.txt")
    if (hdir / "ipvsadm-save.txt").is_file():
        h.ipvs = _ipvsadm(hdir / "ipvsadm-save.txt")
    if (hdir / "keepalived.conf").is_file():
        p = hdir / "keepalived.conf"
        h.keepalived = parse_keepalived(_read(p), str(p))
    if (hdir / "listen.txt").is_file():
        h.listen, bad = _listen(hdir / "listen.txt")
        if bad:
            h.skipped.append(f"{bad} line(s) of listen.txt not understood")
    else:
        h.missing.append("listen.txt")
    if (hdir / "uname.txt").is_file():
        h.kernel = _read(hdir / "uname.txt").strip()
    if (hdir / "skipped.txt").is_file():
        h.skipped += [s.strip() for s in _read(hdir / "skipped.txt").splitlines() if s.strip()]
    return h


def find_hosts(dirs: list[str | Path]) -> list[Path]:
    """Host directories: each DIR is one host's or holds hosts' directories."""
    out: list[Path] = []
    if not dirs:
        raise TopologyError("no directory given: import DIR... (from scripts/collect)")
    for d in map(Path, dirs):
        if not d.is_dir():
            raise _bad(str(d), "no such directory")
        if (d / "ip-addr.json").is_file():
            out.append(d)
            continue
        found = []
        for sub in sorted((p for p in d.iterdir() if p.is_dir()),
                          key=lambda p: natural(p.name)):
            if (sub / "ip-addr.json").is_file():
                found.append(sub)
            elif any((sub / f).is_file() for f in HOST_FILES):
                raise _bad(str(sub / "ip-addr.json"), "missing (every collected host has one: "
                                                      "ip -j addr show)")
        if not found:
            if any((d / f).is_file() for f in HOST_FILES):
                raise _bad(str(d / "ip-addr.json"), "missing (every collected host has one: "
                                                    "ip -j addr show)")
            raise _bad(str(d), "no collected hosts here (no ip-addr.json in it or in its "
                               "subdirectories)")
        out += found
    return out


# -- names ---------------------------------------------------------------------------

def natural(name: str) -> tuple[Any, ...]:
    """Sort key: web2 before web10."""
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", name))


def lab_name(label: str, taken: set[str]) -> str:
    """A lab name for ``label``: its first DNS label, lowercase alphanumerics, starting
    with a letter, at most 10 characters, made unique with digits (and added to
    ``taken``)."""
    base = re.sub(r"[^a-z0-9]", "", label.split(".")[0].lower()) or "host"
    if not base[0].isalpha():
        base = "h" + base
    base = base[:_NAME_MAX]
    name, k = base, 1
    while name in taken:
        k += 1
        name = base[:_NAME_MAX - len(str(k))] + str(k)
    taken.add(name)
    return name


def _span(names: list[str]) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{names[0]} … {names[-1]}"


def _full(ip: IP) -> int:
    return 32 if ip.version == 4 else 128


# -- the twin's hosts -------------------------------------------------------------

@dataclass
class _Iface:
    name: str
    kind: str                       # veth | dummy
    addrs: list[Addr]
    mtu: int | None = None
    segment: str = ""


@dataclass
class _Host:
    c: Collected
    name: str
    role: str
    ifaces: list[_Iface] = field(default_factory=list)
    lo: list[Addr] = field(default_factory=list)
    routes: list[dict[str, str]] = field(default_factory=list)
    sysctls: dict[str, str] = field(default_factory=dict)
    represents: list[str] = field(default_factory=list)

    def veths(self) -> list[_Iface]:
        return [i for i in self.ifaces if i.kind == "veth"]

    def all_addrs(self) -> list[Addr]:
        return [a for i in self.ifaces for a in i.addrs] + self.lo


def _kept_addr(a: Addr) -> bool:
    ip = a.addr
    return not (ip.is_loopback or (ip.version == 6 and ip.is_link_local))


def import_cluster(dirs: list[str | Path], *, roles: dict[str, str] | None = None,
                   anonymize: bool = False, fold: bool = True,
                   name: str = "cluster") -> Imported:
    """Read collected host directories and build the lab's twin of the cluster."""
    return _Importer(dirs, roles or {}, anonymize, fold, name).run()


class _Importer:
    def __init__(self, dirs: list[str | Path], roles: dict[str, str], anonymize: bool,
                 fold: bool, name: str):
        self.dirs, self.role_args, self.anon, self.fold, self.name = (
            dirs, roles, anonymize, fold, name)
        self.notes: list[str] = []
        self.left: list[Collected] = []
        self.vips: set[IP] = set()

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- the steps -----------------------------------------------------------------
    def run(self) -> Imported:
        collected = [read_host(p) for p in find_hosts(self.dirs)]
        seen: dict[str, Path] = {}
        for c in collected:
            if c.name in seen:
                raise _bad(str(c.path), f"host {c.name!r} is collected twice (also "
                                        f"{seen[c.name]})")
            seen[c.name] = c.path
        taken = {CLIENT}
        labnames = {c.name: lab_name(c.name, taken) for c in collected}
        roles = self._roles(collected, labnames)

        directors = [c for c in collected if roles.get(c.name) == "director"]
        dsvcs = {c.name: self._director_services(c) for c in directors}
        for c in collected:
            if c.name not in roles and c.name not in dsvcs and self._is_realserver(c, dsvcs):
                roles[c.name] = "realserver"
        svc_vips = {s.vip for svcs in dsvcs.values() for s in svcs if s.vip is not None}
        for c in collected:
            held = sorted(str(v) for v in self._local_vips(c) & svc_vips)
            if c.name not in roles and held:
                roles[c.name] = "realserver"
                self.note(f"{c.name} holds {', '.join(held)} on lo or a dummy but is no "
                          "real server of it: kept (a stale VIP changes what it reaches); "
                          "the twin puts it in no service")
        left = [c for c in collected if c.name not in roles]
        self.left = left
        self._missing_files([c for c in collected if c.name in roles], roles)
        for c in left:
            self.note(self._left_out_note(c, dsvcs))
        hosts = [_Host(c, labnames[c.name], "director") for c in directors] + [
            _Host(c, labnames[c.name], "realserver") for c in collected
            if roles.get(c.name) == "realserver"]
        if not hosts:
            raise TopologyError("no director or real server among the collected hosts ("
                                + ", ".join(c.name for c in collected[:8])
                                + (", ..." if len(collected) > 8 else "")
                                + "): give --role NAME=director or NAME=realserver")
        services = self._merge(dsvcs, {h.c.name: h for h in hosts})
        vips = {s.vip for s, _ in services if s.vip is not None}
        self.vips = vips
        for h in hosts:
            self._interfaces(h, vips)
        self._drop_shared(hosts, vips)
        ka = {h.c.name: h.c.keepalived for h in hosts
              if h.role == "director" and h.c.keepalived is not None
              and (h.c.keepalived.instances or h.c.keepalived.virtual_servers)}
        for h in hosts:
            if h.role == "realserver" and h.c.keepalived is not None:
                self.note(f"{h.c.name} runs keepalived but is a real server: its "
                          "keepalived.conf is left out")
        segments = self._segments(hosts, vips)
        svc_data = self._services(services, hosts, ka)
        self._place_director_vips(svc_data, hosts, ka)
        for h in hosts:
            self._routes(h)
            self._sysctls(h)
        kernels = sorted({h.c.kernel for h in hosts if h.c.kernel})
        if kernels:
            self.note(f"collected kernels: {', '.join(kernels)}; the twin runs this "
                      "machine's kernel")
        for h in hosts:
            for s in h.c.skipped:
                # no keepalived, or no IPVS table on a real server: nothing was missed
                if s.startswith("keepalived.conf:") and ("-k none" in s or "not found" in s) \
                        or h.role == "realserver" and s.startswith("ipvsadm-save.txt:"):
                    continue
                self.note(f"{h.c.name}: collect skipped: {s}")
        all_hosts = hosts
        if self.fold:
            hosts = self._fold(hosts, svc_data)
        client = self._client(hosts, svc_data, collected, segments)
        self._keepalived_notes(ka, hosts)

        used = {i.segment for h in hosts for i in h.veths()} | (
            {client["interfaces"][0]["segment"]} if client else set())
        segments = [s for s in segments if s in used]
        data: dict[str, Any] = {"name": self.name, "segments": segments, "hosts": {}}
        if client:
            data["hosts"][CLIENT] = client
        for h in hosts:
            data["hosts"][h.name] = self._host_data(h)
        if svc_data:
            data["services"] = svc_data
        if ka:
            twin_ips = {str(a.addr) for h in hosts for a in h.all_addrs()}
            data["keepalived"] = {}
            for n, cfg in ka.items():
                text, gone = strip_real_servers(cfg.text, twin_ips)
                if gone:
                    self.note(f"{cfg.source}: the twin runs it without the real_server "
                              f"blocks of {_span(gone)} (folded or not collected), so "
                              "keepalived balances over the hosts the twin has")
                data["keepalived"][labnames[n]] = text
        names = {h.name: h.c.name for h in hosts}
        if self.anon:
            data, names = self._anonymize(data, names, all_hosts, collected, labnames)
        waive = self._waivers(data)
        if waive:
            data = {"name": data["name"], "waive": waive,
                    **{k: v for k, v in data.items() if k != "name"}}
        return Imported(data, self.notes, names)

    # -- roles ---------------------------------------------------------------------
    def _roles(self, collected: list[Collected], labnames: dict[str, str]) -> dict[str, str]:
        by = {c.name: c.name for c in collected} | {labnames[c.name]: c.name
                                                    for c in collected}
        out: dict[str, str] = {}
        for key, role in self.role_args.items():
            if key not in by:
                known = ", ".join(c.name for c in collected[:10])
                raise TopologyError(f"--role {key}={role}: no collected host {key!r} "
                                    f"(collected: {known}{', ...' if len(collected) > 10 else ''})")
            if role not in IMPORT_ROLES:
                raise TopologyError(f"--role {key}={role}: the role is director or realserver")
            out[by[key]] = role
        for c in collected:
            if c.name not in out and (c.ipvs or (c.keepalived is not None
                                                 and c.keepalived.virtual_servers)):
                out[c.name] = "director"
        return out

    def _missing_files(self, collected: list[Collected], roles: dict[str, str]) -> None:
        by: dict[str, list[str]] = {}
        for c in collected:
            for f in c.missing:
                if f == "listen.txt" and roles.get(c.name) != "realserver":
                    continue
                by.setdefault(f, []).append(c.name)
        what = {"ip-link.json": "interface kinds unknown: every interface becomes a veth",
                "ip-route.json": "no routes", "sysctl.txt": "no sysctls: the lab's defaults",
                "listen.txt": "their services count as listening on any address"}
        for f, hs in by.items():
            self.note(f"no {f} from {_span(hs)}: {what.get(f, 'left out')}")

    @staticmethod
    def _local_vips(c: Collected) -> set[IP]:
        """Addresses ``c`` holds on lo or a NOARP/dummy link (where DR puts a VIP)."""
        out: set[IP] = set()
        for link in c.links:
            if link.name == "lo" or link.kind == "dummy" or link.noarp:
                out |= {a.addr for a in link.addrs}
        return out

    def _is_realserver(self, c: Collected, dsvcs: dict[str, list[Service]]) -> bool:
        """A real server of a service: one of its RIPs, holding its VIP. A RIP without
        the VIP is a real server too (IPVS sends it traffic it drops: the
        missing-vip-on-rs mistake), said in a note."""
        mine = c.addresses()
        lacking = sorted({s.shown for svcs in dsvcs.values() for s in svcs
                          if s.vip is not None and s.vip not in mine
                          and any(r.ip in mine and r.ip != s.vip for r in s.reals)})
        if lacking:
            self.note(f"{c.name} is a real server of {', '.join(lacking)} (its address is in "
                      "the IPVS table) but holds no VIP of it: kept as it is")
        return any(any(r.ip in mine and r.ip != s.vip for r in s.reals)
                   for svcs in dsvcs.values() for s in svcs if s.vip is not None)

    def _left_out_note(self, c: Collected, dsvcs: dict[str, list[Service]]) -> str:
        mine = c.addresses()
        rips = sorted({f"{r.ip} of {s.shown}" for svcs in dsvcs.values() for s in svcs
                       for r in s.reals if r.ip in mine})
        why = ("it has no IPVS table and holds no VIP of a service whose real server it is"
               if not rips else f"it is real server {rips[0]} but holds no VIP of it")
        return (f"{c.name} is neither a director nor a real server ({why}): left out; "
                f"--role {c.name}=director or --role {c.name}=realserver brings it in")

    # -- services ------------------------------------------------------------------
    def _director_services(self, c: Collected) -> list[Service]:
        cfg = c.keepalived
        if c.ipvs:
            svcs = c.ipvs
        elif cfg is not None and cfg.virtual_servers:
            svcs = self._ka_services(cfg)
        else:
            self.note(f"{c.name} is a director without an IPVS table or virtual_server")
            return []
        out = []
        for s in svcs:
            if s.protocol not in ("tcp", "udp"):
                self.note(f"{s.shown} on {c.name}: {s.protocol} services are not supported: "
                          "left out")
                continue
            if s.fwmark is not None and s.vip is None and not self._fwmark_from_ka(s, c):
                continue
            out.append(s)
        return out

    def _fwmark_from_ka(self, s: Service, c: Collected) -> bool:
        cfg = c.keepalived
        why = "ipvsadm-save holds no VIP or ports for a firewall-mark service"
        if cfg is None:
            self.note(f"fwmark {s.fwmark} on {c.name}: {why}, and there is no "
                      "keepalived.conf to say them: left out")
            return False
        vs = next((v for v in cfg.virtual_servers if v.fwmark == s.fwmark), None)
        vips = sorted({v for i in cfg.instances for v in i.vips
                       if ipaddress.ip_address(v).version == s.family})
        ports = sorted({r.port for r in vs.real_servers} if vs else set())
        if vs is None or len(vips) != 1 or len(ports) != 1 or ports[0] == 0:
            self.note(f"fwmark {s.fwmark} on {c.name}: {why}, and {cfg.source} does not say "
                      "them (one VIP in virtual_ipaddress, one real_server port): left out")
            return False
        s.vip, s.port = ipaddress.ip_address(vips[0]), ports[0]
        self.note(f"fwmark {s.fwmark} on {c.name}: VIP {s.vip} and port {s.port} taken from "
                  f"{cfg.source} (virtual_ipaddress and the real_server port)")
        return True

    def _ka_services(self, cfg: KaConfig) -> list[Service]:
        tree = {n.line: n for n in parse_tree(cfg.text, cfg.source)}
        out = []
        for vs in cfg.virtual_servers:
            where = f"{cfg.source}:{vs.line}"
            sched = (vs.scheduler or "wlc").lower()
            if sched not in SCHEDULERS:
                raise _bad(where, f"lb_algo {sched!r}: not an IPVS scheduler")
            node: Node | None = tree.get(vs.line)
            gran = node.value("persistence_granularity") if node is not None else None
            vip = ipaddress.ip_address(vs.vip) if vs.vip else None
            family = vip.version if vip else (
                ipaddress.ip_address(vs.real_servers[0].ip).version if vs.real_servers else 4)
            fwd = {"DR": "g", "NAT": "m", "TUN": "i"}.get((vs.lb_kind or "NAT").upper(), "m")
            s = Service(vs.protocol, vip, vs.port, vs.fwmark, family, sched, where,
                        vs.persistence, gran if vs.persistence else None)
            s.reals = [RealEntry(ipaddress.ip_address(r.ip), r.port, fwd, r.weight,
                                 f"{cfg.source}:{r.line}") for r in vs.real_servers]
            out.append(s)
        return out

    def _merge(self, dsvcs: dict[str, list[Service]], hosts: dict[str, _Host]
               ) -> list[tuple[Service, str]]:
        """One service per key, each on its director (the VIP's holder, or the VRRP
        MASTER); directors with differing tables keep each their own services."""
        keys: dict[tuple[Any, ...], list[tuple[str, Service]]] = {}
        for d, svcs in dsvcs.items():
            for s in svcs:
                keys.setdefault(s.key, []).append((d, s))
        tables = {d: sorted(s.key for s in svcs) for d, svcs in dsvcs.items() if svcs}
        if len({tuple(t) for t in tables.values()}) > 1:
            self.note("the directors' IPVS tables differ ("
                      + "; ".join(f"{d}: {len(t)} service(s)" for d, t in tables.items())
                      + "): each keeps its own services")
        out = []
        for versions in keys.values():
            d, s = min(versions, key=lambda v: self._director_rank(hosts[v[0]].c, v[1]))
            others = [od for od, os in versions if od != d and os.table() != s.table()]
            if others:
                self.note(f"{s.shown}: {', '.join(others)} hold(s) a different version of it "
                          f"than {d}; the twin uses {d}'s")
            out.append((s, d))
        return out

    def _director_rank(self, c: Collected, s: Service) -> tuple[int, int, int]:
        holds = any(a.addr == s.vip for ln in c.links if ln.kind != "loopback"
                    for a in ln.addrs)
        master, prio = 0, 0
        if c.keepalived is not None:
            for i in c.keepalived.instances:
                if str(s.vip) in i.vips:
                    master = int((i.state or "").upper() == "MASTER")
                    prio = i.priority or 0
        return (-int(holds), -master, -prio)

    def _services(self, services: list[tuple[Service, str]], hosts: list[_Host],
                  ka: dict[str, KaConfig]) -> list[dict[str, Any]]:
        owner: dict[IP, _Host] = {}
        for h in hosts:
            for a in h.all_addrs():
                if a.addr not in self.vips:
                    owner.setdefault(a.addr, h)
        left = {}
        for c in self.left:
            for ip in c.addresses():
                left.setdefault(ip, c.name)
        by = {h.c.name: h for h in hosts}
        out = []
        for s, d in services:
            rss: list[dict[str, Any]] = []
            for r in s.reals:
                if r.fwd != "g":
                    kind = {"m": "masquerading (NAT, -m)", "i": "tunnel (-i)"}[r.fwd]
                    self.note(f"real server {r.ip} of {s.shown} forwards by {kind}: this lab "
                              "is DR only: left out")
                    continue
                h = owner.get(r.ip)
                if h is None:
                    if r.ip in left:
                        self.note(f"real server {r.ip} of {s.shown} is {left[r.ip]}, which is "
                                  "left out (see above)")
                    else:
                        self.note(f"real server {r.ip} of {s.shown} was not collected: "
                                  "left out")
                    continue
                if any(x["host"] == h.name for x in rss):
                    self.note(f"{s.shown}: {h.c.name} is listed twice; the twin keeps it once")
                    continue
                if s.fwmark is None and r.port != s.port:
                    self.note(f"real server {r.ip}:{r.port} of {s.shown}: DR does not map "
                              f"ports, it receives port {s.port}")
                rss.append({"host": h.name, "weight": r.weight,
                            "listen": self._listen_mode(h, s)})
            if not rss:
                self.note(f"{s.shown} on {d}: no collected DR real server: left out")
                continue
            for e in s.extras:
                self.note(f"{s.shown}: {e} is not reproduced in the twin")
            assert s.vip is not None
            svc: dict[str, Any] = {"vip": str(s.vip), "port": s.port, "protocol": s.protocol,
                                   "scheduler": s.scheduler, "director": by[d].name,
                                   "real_servers": rss}
            if s.persistence is not None:
                svc["persistence"] = s.persistence
                if s.netmask is not None:
                    svc["persistence_netmask"] = s.netmask
            if s.fwmark is not None:
                svc["fwmark"] = s.fwmark
            out.append(svc)
        return out

    def _listen_mode(self, h: _Host, s: Service) -> str:
        ls = h.c.listen
        if ls is None:
            return "any"
        v6only = h.c.sysctls.get("net.ipv6.bindv6only", "0") == "1"
        assert s.vip is not None
        mine = [x for x in ls if x.protocol == s.protocol and x.port == s.port]
        for x in mine:
            if x.addr is None and (x.family is None or x.family == s.vip.version
                                   or (x.family == 6 and not v6only)):
                return "any"
        if any(x.addr == s.vip for x in mine):
            return "vip"
        return "rip" if mine else "none"

    # -- interfaces ----------------------------------------------------------------
    def _interfaces(self, h: _Host, vips: set[IP]) -> None:
        kinds: dict[str, list[str]] = {}
        for ln in h.c.links:
            addrs = [a for a in ln.addrs if _kept_addr(a)]
            if ln.kind == "loopback":
                h.lo += addrs
                continue
            if not any(a.scope == "global" or a.addr in vips for a in addrs):
                continue
            only_vips = all(a.addr in vips for a in addrs)
            if ln.kind == "dummy":
                kind = "dummy"
            elif ln.noarp and only_vips:
                kind = "dummy"
                self.note(f"{h.c.name}: {ln.name} ({ln.kind or 'no kind'}, NOARP) holds only "
                          "VIPs: a dummy interface in the twin (NOARP, on no segment)")
            else:
                kind = "veth"
                if ln.kind and ln.kind != "veth":
                    kinds.setdefault(ln.kind, []).append(ln.name)
                if ln.noarp:
                    self.note(f"{h.c.name}: {ln.name} is NOARP in production; the twin's veth "
                              "is not (its sysctls still apply)")
            h.ifaces.append(_Iface(ln.name, kind, addrs, ln.mtu))
        for k, names in kinds.items():
            self.note(f"{h.c.name}: {k} interface(s) {', '.join(names)} become veths on "
                      "their segments")

    def _drop_shared(self, hosts: list[_Host], vips: set[IP]) -> None:
        """Addresses (not VIPs) on several hosts are host-local bridges (docker0,
        virbr0) or anycast: the twin cannot have them twice."""
        holders: dict[IP, list[_Host]] = {}
        for h in hosts:
            for a in {a.addr for a in h.all_addrs()}:
                if a not in vips:
                    holders.setdefault(a, []).append(h)
        shared = {ip for ip, hs in holders.items() if len(hs) > 1}
        if not shared:
            return
        for ip in sorted(shared, key=lambda x: (x.version, x)):
            self.note(f"{ip} is on several hosts ({_span([h.c.name for h in holders[ip]])}): "
                      "left out (a host-local bridge or anycast; the twin cannot have it "
                      "twice)")
        for h in hosts:
            h.lo = [a for a in h.lo if a.addr not in shared]
            for i in h.ifaces:
                i.addrs = [a for a in i.addrs if a.addr not in shared]
            h.ifaces = [i for i in h.ifaces if i.addrs]

    def _segments(self, hosts: list[_Host], vips: set[IP]) -> list[str]:
        """Interfaces whose subnets overlap share a segment: lan, lan2, ... by first
        appearance (directors come first)."""
        parent: dict[int, int] = {}

        def find(x: int) -> int:
            while parent.setdefault(x, x) != x:
                x = parent[x]
            return x

        ifaces = [i for h in hosts for i in h.veths()]
        nets: dict[IPNet, int] = {}
        for n, i in enumerate(ifaces):
            find(n)
            for a in i.addrs:
                if a.addr in vips or a.ip.network.prefixlen == _full(a.addr):
                    continue
                net = a.ip.network
                if net in nets:
                    parent[find(n)] = find(nets[net])
                else:
                    nets[net] = n
        distinct = list(nets)
        for k, a in enumerate(distinct):
            for b in distinct[k + 1:]:
                if a.version == b.version and a.overlaps(b):
                    parent[find(nets[a])] = find(nets[b])
        by_vip: dict[IP, int] = {}
        for n, i in enumerate(ifaces):
            if any(a.addr not in vips and a.ip.network.prefixlen < _full(a.addr)
                   for a in i.addrs):
                continue
            home = next((nets[net] for a in i.addrs for net in distinct
                         if a.addr in net), None)
            if home is not None:
                parent[find(n)] = find(home)
                continue
            for a in i.addrs:   # the same VIP outside every subnet: one segment
                if a.addr in by_vip:
                    parent[find(n)] = find(by_vip[a.addr])
                else:
                    by_vip[a.addr] = n
        names: dict[int, str] = {}
        for n, i in enumerate(ifaces):
            root = find(n)
            if root not in names:
                names[root] = "lan" if not names else f"lan{len(names) + 1}"
            i.segment = names[root]
        return list(names.values())

    def _place_director_vips(self, svcs: list[dict[str, Any]], hosts: list[_Host],
                             ka: dict[str, KaConfig]) -> None:
        by = {h.name: h for h in hosts}
        if ka:
            for h in hosts:
                if h.role != "director":
                    continue
                placed = {ipaddress.ip_address(v) for i in (ka[h.c.name].instances
                                                            if h.c.name in ka else [])
                          for v in i.vips}
                gone = [f"{a.addr} ({i.name})" for i in h.ifaces for a in i.addrs
                        if a.addr in placed]
                gone += [f"{a.addr} (lo)" for a in h.lo if a.addr in placed]
                stray = [f"{a.addr} ({i.name})" for i in h.ifaces for a in i.addrs
                         if a.addr in self.vips and a.addr not in placed]
                for i in h.ifaces:
                    i.addrs = [a for a in i.addrs if a.addr not in placed | self.vips]
                h.lo = [a for a in h.lo if a.addr not in placed]
                if gone:
                    self.note(f"{h.c.name}: {', '.join(gone)} left to keepalived: its "
                              "virtual_ipaddress places them in the twin (VRRP)")
                if stray:
                    self.note(f"{h.c.name}: {', '.join(stray)} removed: in a twin with "
                              "keepalived only keepalived places service VIPs on directors, "
                              "and no virtual_ipaddress of this director names these")
            return
        for s in svcs:
            d = by[s["director"]]
            vip = ipaddress.ip_address(s["vip"])
            if any(a.addr == vip for i in d.veths() for a in i.addrs):
                continue
            rips = {ipaddress.ip_address(a.ip.ip) for r in s["real_servers"]
                    for a in by[r["host"]].all_addrs()}
            lan = next((i for i in d.veths() for a in i.addrs
                        if any(ip in a.ip.network for ip in rips if ip != vip)),
                       d.veths()[0] if d.veths() else None)
            if lan is None:
                continue
            lan.addrs.append(Addr(ipaddress.ip_interface(f"{vip}/{_full(vip)}")))
            self.note(f"{d.c.name} holds the VIP {vip} on no interface (routed to it?): the "
                      f"twin puts it on {lan.name}")

    def _routes(self, h: _Host) -> None:
        kept = {i.name for i in h.veths()}
        nets = [a.ip.network for i in h.veths() for a in i.addrs if a.addr not in self.vips]
        seen: set[tuple[str, int]] = set()
        dropped = []
        for src, r in h.c.routes:
            if r.get("protocol") == "kernel" or r.get("type", "unicast") != "unicast" \
                    or r.get("table") not in (None, "main"):
                continue
            dst = str(r.get("dst", ""))
            try:
                if dst != "default":
                    net = ipaddress.ip_network(dst if "/" in dst else
                                               f"{dst}/{_full(ipaddress.ip_address(dst))}",
                                               strict=False)
                    dst = str(net)
                    if net.version == 6 and (net.is_link_local or net.is_multicast):
                        continue
                via = ipaddress.ip_address(r["gateway"]) if r.get("gateway") else None
            except ValueError:
                raise _bad(src, f"route {r.get('dst')!r}: not an address or prefix") from None
            family = (via.version if via else 6 if ":" in dst
                      else 6 if "6" in Path(src).name else 4)
            shown = f"{dst}" + (f" via {via}" if via else "") + f" dev {r.get('dev')}"
            if r.get("nexthops") or (r.get("dev") is not None and r.get("dev") not in kept):
                dropped.append(shown)
                continue
            if (dst, family) in seen:
                continue
            if via is not None:
                if not any(via in n for n in nets):
                    dropped.append(shown)
                    continue
                h.routes.append({"dst": dst, "via": str(via)})
            elif r.get("dev") in kept:
                h.routes.append({"dst": dst, "dev": str(r["dev"])})
            else:
                dropped.append(shown)
                continue
            seen.add((dst, family))
        if dropped:
            self.note(f"{h.c.name}: route(s) {'; '.join(dropped[:4])}"
                      f"{' ...' if len(dropped) > 4 else ''} left out (via an interface or "
                      "gateway the twin does not have)")

    def _sysctls(self, h: _Host) -> None:
        names = [i.name for i in h.ifaces]
        want = [f"net.ipv4.conf.{dev}.{k}" for dev in ("all", "default", "lo", *names)
                for k in CONF_KEYS] + ["net.ipv4.ip_forward"]
        if h.role == "director":
            want += [f"net.ipv4.vs.{k}" for k in VS_KEYS]
        out = {}
        for key in want:
            dev = key.split(".")[3] if key.startswith("net.ipv4.conf.") else ""
            raw = key.replace(f".conf.{dev}.", f".conf.{dev.replace('.', '/')}.") if dev \
                else key
            if raw in h.c.sysctls:
                if "." in dev:
                    self.note(f"{h.c.name}: {raw} is not reproduced (the lab cannot name "
                              f"{dev}'s sysctls)")
                    continue
                out[key] = h.c.sysctls[raw]
        h.sysctls = out

    # -- folding -------------------------------------------------------------------
    def _signature(self, h: _Host, svcs: list[dict[str, Any]]) -> tuple[Any, ...]:
        def shape(a: Addr) -> tuple[Any, ...]:
            return (str(a.addr) if a.addr in self.vips else "-", a.ip.network.prefixlen,
                    a.scope, a.addr.version)

        return (
            tuple((n, r["weight"], r["listen"]) for n, s in enumerate(svcs)
                  for r in s["real_servers"] if r["host"] == h.name),
            tuple(sorted(h.sysctls.items())),
            tuple((i.name, i.kind, i.segment, i.mtu, tuple(sorted(map(shape, i.addrs))))
                  for i in h.ifaces),
            tuple(sorted(map(shape, h.lo))),
            tuple((r["dst"], r.get("via"), r.get("dev")) for r in h.routes),
        )

    def _fold(self, hosts: list[_Host], svcs: list[dict[str, Any]]) -> list[_Host]:
        classes: dict[tuple[Any, ...], list[_Host]] = {}
        for h in hosts:
            if h.role == "realserver":
                classes.setdefault(self._signature(h, svcs), []).append(h)
        folded = [c for c in classes.values() if len(c) > 2]
        if not folded:
            return hosts
        gone: set[str] = set()
        parts = []
        for members in folded:
            keep, rest = members[:2], members[2:]
            half = (len(rest) + 1) // 2
            keep[0].represents = [h.c.name for h in rest[:half]]
            keep[1].represents = [h.c.name for h in rest[half:]]
            gone |= {h.name for h in rest}
            parts.append(f"{keep[0].c.name}, {keep[1].c.name} stand for {len(rest)} identical "
                         f"({_span([h.c.name for h in rest])})")
        n_rs = sum(len(c) for c in classes.values())
        n_kept = n_rs - len(gone)
        self.note(f"{n_rs} real servers fold into {n_kept} ({len(classes)} "
                  f"class{'es' if len(classes) > 1 else ''} of identical ones): "
                  + "; ".join(parts) + ". The folded hosts are in no service of the twin "
                  "(their weights are gone with them); --no-fold keeps them all")
        for s in svcs:
            s["real_servers"] = [r for r in s["real_servers"] if r["host"] not in gone]
        return [h for h in hosts if h.name not in gone]

    def _keepalived_notes(self, ka: dict[str, KaConfig], hosts: list[_Host]) -> None:
        for name, cfg in ka.items():
            c = next(h.c for h in hosts if h.c.name == name)
            if c.ipvs:
                mine = {s.shown for s in self._ka_services(cfg)}
                table = {s.shown for s in c.ipvs}
                if mine != table:
                    self.note(f"{name}: ipvsadm-save and keepalived.conf differ ("
                              + "; ".join(x for x in (
                                  "only in ipvsadm-save: " + ", ".join(sorted(table - mine))
                                  if table - mine else "",
                                  "only in keepalived.conf: " + ", ".join(sorted(mine - table))
                                  if mine - table else "") if x)
                              + "): the services come from ipvsadm-save, keepalived runs "
                              "its file")

    # -- the client ----------------------------------------------------------------
    def _client(self, hosts: list[_Host], svcs: list[dict[str, Any]],
                collected: list[Collected], segments: list[str]) -> dict[str, Any] | None:
        by = {h.name: h for h in hosts}
        lan: _Iface | None = None
        if svcs:
            d = by[svcs[0]["director"]]
            rs_segs = [{i.segment for i in by[r["host"]].veths()}
                       for r in svcs[0]["real_servers"]]
            lan = next((i for i in d.veths() if any(i.segment in s for s in rs_segs)),
                       d.veths()[0] if d.veths() else None)
        if lan is None:
            lan = next((i for h in hosts for i in h.veths()), None)
        if lan is None:
            self.note("no interface on a segment: the twin has no client")
            return None
        taken: set[IP] = set(self.vips)
        for c in collected:
            taken |= c.addresses()
            for s in c.ipvs or []:
                taken |= {r.ip for r in s.reals}
            for _, r in c.routes:
                try:
                    taken.add(ipaddress.ip_address(r.get("gateway", "")))
                except ValueError:
                    pass
            if c.keepalived is not None:
                for vs in c.keepalived.virtual_servers:
                    taken |= {ipaddress.ip_address(r.ip) for r in vs.real_servers}
        addrs = []
        for version in (4, 6):
            net = next((a.ip.network for a in lan.addrs if a.addr.version == version
                        and a.addr not in self.vips and a.ip.network.num_addresses >= 4), None)
            if net is None:
                continue
            top = net.broadcast_address - 1 if version == 4 else net.network_address + 0xfe
            free = next((top - k for k in range(min(net.num_addresses - 2, 65536))
                         if top - k not in taken and top - k != net.network_address), None)
            if free is None:
                self.note(f"{net}: no free address for the lab client")
                continue
            addrs.append(ipaddress.ip_interface(f"{free}/{net.prefixlen}"))
        if not addrs:
            self.note(f"{lan.name}: no subnet with a free address: the twin has no client")
            return None
        routes = []
        for vip in sorted({ipaddress.ip_address(s["vip"]) for s in svcs},
                          key=lambda v: (v.version, v)):
            mine = [a for a in addrs if a.version == vip.version]
            if not mine:
                self.note(f"the lab client has no IPv{vip.version} address on {lan.segment}: "
                          f"it cannot reach the VIP {vip}")
            elif not any(vip in a.network for a in mine):
                routes.append({"dst": f"{vip}/{_full(vip)}", "dev": "eth0"})
        owner = next(h for h in hosts if lan in h.ifaces)
        self.note(f"lab client at {', '.join(str(a) for a in addrs)} on {lan.segment} (the "
                  f"segment of {owner.c.name}'s {lan.name})"
                  + (f", with {', '.join(r['dst'] for r in routes)} routed on the LAN as a "
                     "router would" if routes else ""))
        for s in svcs:
            d = by[s["director"]]
            if lan.segment not in {i.segment for i in d.veths()}:
                self.note(f"{s['vip']}:{s['port']}/{s['protocol']} is on {d.c.name}, which is "
                          f"not on the client's segment {lan.segment}")
        out: dict[str, Any] = {"role": "client", "label": "(lab client)", "interfaces": [
            {"name": "eth0", "segment": lan.segment, "addresses": [str(a) for a in addrs]}]}
        if routes:
            out["routes"] = routes
        return out

    # -- output --------------------------------------------------------------------
    def _host_data(self, h: _Host) -> dict[str, Any]:
        d: dict[str, Any] = {"role": h.role, "label": h.c.name}
        if h.represents:
            d["represents"] = list(h.represents)
        ifaces = []
        for i in h.ifaces:
            idict: dict[str, Any] = {"name": i.name}
            if i.kind == "dummy":
                idict["kind"] = "dummy"
            else:
                idict["segment"] = i.segment
            idict["addresses"] = [a.data() for a in i.addrs]
            if i.mtu is not None and i.mtu != 1500:
                idict["mtu"] = i.mtu
            ifaces.append(idict)
        if ifaces:
            d["interfaces"] = ifaces
        if h.lo:
            d["lo"] = [a.data() for a in h.lo]
        if h.routes:
            d["routes"] = list(h.routes)
        if h.sysctls:
            d["sysctls"] = dict(h.sysctls)
        return d

    def _waivers(self, data: dict[str, Any]) -> list[str]:
        waive = set()
        vips = {s["vip"] for s in data.get("services", [])}
        on_veth: dict[str, set[str]] = {}   # VIP -> hosts with it on an interface
        veth_vips: set[str] = set()
        outside = False
        for hn, h in data["hosts"].items():
            for i in h.get("interfaces", []):
                for a in i["addresses"]:
                    cidr = a if isinstance(a, str) else a["cidr"]
                    ip = ipaddress.ip_interface(cidr).ip
                    outside |= not in_doc_range(ip)
                    if str(ip) in vips:
                        on_veth.setdefault(str(ip), set()).add(hn)
                        veth_vips |= {str(ip)} if i.get("kind") != "dummy" else set()
            for a in h.get("lo", []):
                iface = ipaddress.ip_interface(a if isinstance(a, str) else a["cidr"])
                outside |= not in_doc_range(iface.ip)
                if str(iface.ip) in vips and iface.network.prefixlen != _full(iface.ip):
                    waive.add("vip-lo-prefix")
                    self.note(f"{h.get('label', hn)} has the VIP {iface} on lo with a wider "
                              "prefix than /32 (/128), as in production")
            for r in h.get("routes", []):
                if r["dst"] != "default":
                    net = ipaddress.ip_network(r["dst"])
                    outside |= not any(net.subnet_of(d) for d in DOC_RANGES  # type: ignore
                                       if d.version == net.version)
                if "via" in r:
                    outside |= not in_doc_range(ipaddress.ip_address(r["via"]))
        for vip in vips:
            outside |= not in_doc_range(ipaddress.ip_address(vip))
        for vip, hs in on_veth.items():
            if len(hs) > 1 and vip in veth_vips:
                waive.add("vip-duplicate")
                self.note(f"the VIP {vip} is on an interface (not lo) of several hosts "
                          f"({', '.join(sorted(hs))}), as in production")
        if outside:
            waive.add(ANY_ADDRESS)
        return sorted(waive)

    def _anonymize(self, data: dict[str, Any], names: dict[str, str], hosts: list[_Host],
                   collected: list[Collected], labnames: dict[str, str]
                   ) -> tuple[dict[str, Any], dict[str, str]]:
        """Role-based names, documentation addresses (see lab.model.anonymize)."""
        new: dict[str, str] = {}   # collected name -> anonymized name
        counts = {"director": 0, "realserver": 0}
        for h in hosts:
            counts[h.role] += 1
            n = counts[h.role]
            new[h.c.name] = (f"director{n}" if len(f"director{n}") <= _NAME_MAX else f"d{n}") \
                if h.role == "director" else f"rs{n}"
        k = 0
        for c in collected:
            if c.name not in new:
                k += 1
                new[c.name] = f"host{k}"
        lab_to_new = {labnames[c]: n for c, n in new.items()}
        hostsd = {}
        for hn, h in data["hosts"].items():
            if hn == CLIENT:
                hostsd[hn] = h
                continue
            h = dict(h, label=lab_to_new[hn])
            if "represents" in h:
                h["represents"] = [new[x] for x in h["represents"]]
            hostsd[lab_to_new[hn]] = h
        data = dict(data, hosts=hostsd)
        for s in data.get("services", []):
            s["director"] = lab_to_new[s["director"]]
            for r in s["real_servers"]:
                r["host"] = lab_to_new[r["host"]]
        if "keepalived" in data:
            data["keepalived"] = {lab_to_new[k]: v for k, v in data["keepalived"].items()}
        data, self.notes = anonymize_topology(data, new, self.notes)
        return data, {lab_to_new[ln]: cn for ln, cn in names.items()}


# -- TOML --------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _str(k)


def _str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _text(s: str) -> str:
    """A multi-line string: literal when it can be, so that configs read as they are."""
    if "\n" in s and "'''" not in s and not s.endswith("'") and not re.search(
            r"[\x00-\x08\x0b-\x1f\x7f]", s):
        return "'''\n" + s + "'''"
    return _str(s)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return _str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }" \
            if v else "{}"
    raise TypeError(f"to_toml: cannot write {type(v).__name__} {v!r}")


def _pairs(d: dict[str, Any], out: list[str]) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            continue
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out.append(f"{_key(k)} = [")
            out += [f"    {_value(x)}," for x in v]
            out.append("]")
        elif isinstance(v, str) and "\n" in v:
            out.append(f"{_key(k)} = {_text(v)}")
        else:
            out.append(f"{_key(k)} = {_value(v)}")


def _tables(path: list[str], d: dict[str, Any], out: list[str], top: bool = False) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            sub = [*path, _key(k)]
            if not v or any(not isinstance(x, dict) for x in v.values()):
                out += ["", f"[{'.'.join(sub)}]"]
                _pairs(v, out)
            _tables(sub, v, out)
        elif top and isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                out += ["", f"[[{_key(k)}]]"]
                _pairs(x, out)
                _tables([_key(k)], {kk: vv for kk, vv in x.items() if isinstance(vv, dict)},
                        out)


def to_toml(data: dict[str, Any]) -> str:
    """TOML for topology-shaped data: ``tomllib.loads(to_toml(d)) == d``. Top-level
    lists of tables (``services``) become ``[[services]]``, deeper ones arrays of
    inline tables, keepalived.conf texts multi-line strings."""
    out: list[str] = []
    top = {k: v for k, v in data.items()
           if not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
    _pairs(top, out)
    _tables([], data, out, top=True)
    return "\n".join(out).lstrip("\n") + "\n"

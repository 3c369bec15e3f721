"""A collected cluster -> the lab's twin of it, a :class:`~lab.model.Topology`
(``drlab import``): pure, reads files only (through :mod:`lab.model.collected.read`).

:func:`import_cluster` turns collected directories into the directors and real
servers with their interfaces, VIPs (on ``lo``, on dummies, on LAN interfaces), routes
and the raw ARP/rp_filter/IPVS sysctls (the twin's kernel computes the effective
values from them, as production does), every DR service of the IPVS tables, where
each real server really listens, a lab client on the director's LAN, and identical
real servers folded into two representatives. Everything it inferred, folded or left
out is said in :attr:`Imported.notes`. :func:`lab.model.writer.dump` writes the
topology as a file.
"""

from __future__ import annotations

import gc
import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from lab.errors import TopologyError
from lab.model.anonymize import anonymize_topology, interface_names, kernel_version
from lab.model.collected.parse import bad, clip
from lab.model.collected.read import HOST_FILES, read_hosts
from lab.model.collected.records import (
    IP,
    CollectedAddress,
    CollectedHost,
    CollectedReal,
    CollectedService,
    IPNet,
)
from lab.model.files import shown
from lab.model.keepalived import (
    KaConfig,
    Stripped,
    strip_real_servers,
    strip_scripts,
)
from lab.model.loader import check_text, topology_from_dict, topology_to_dict, validated
from lab.model.ranges import aggregate, summary
from lab.model.topology import (
    ANY_ADDRESS,
    SCHEDULERS,
    Address,
    Host,
    Interface,
    RealServer,
    Role,
    Route,
    Segment,
    Topology,
    VirtualService,
    in_doc_range,
    ip_address,
    net_in_doc_range,
)

#: The roles ``--role NAME=ROLE`` may give.
IMPORT_ROLES = ("director", "realserver")
#: Per-interface ARP and reverse-path sysctls kept as collected.
CONF_KEYS = ("arp_ignore", "arp_announce", "rp_filter", "arp_filter", "accept_local")
#: IPVS sysctls kept on directors.
VS_KEYS = ("conn_reuse_mode", "expire_nodest_conn", "expire_quiescent_template", "sloppy_tcp",
           "schedule_icmp", "conntrack", "snat_reroute")
CLIENT = "client"
_NAME_MAX = 10
Listen = Literal["any", "vip", "rip", "none"]


@dataclass
class Imported:
    """What :func:`import_cluster` made of a collected cluster."""

    #: The twin, validated (:func:`lab.model.writer.dump` writes it as a file).
    topology: Topology
    #: What the import inferred, folded or skipped, in words (the CLI prints them).
    notes: list[str]
    #: Lab host name -> collected host name.
    names: dict[str, str]
    #: What was removed from the keepalived.conf files (it would run a program or
    #: touch the lab's machine); each is in :attr:`notes` too.
    stripped: list[Stripped] = field(default_factory=list)


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


# -- what the twin keeps of a collected host -----------------------------------------

@dataclass
class _KeptLink:
    """A collected link the twin keeps: the addresses it keeps of it, as collected, and
    where it goes in the twin (a veth on a segment, or a dummy)."""

    name: str
    kind: Literal["veth", "dummy"]
    addrs: list[CollectedAddress]
    mtu: int | None = None
    segment: str = ""


@dataclass
class _Kept:
    """A collected host the twin keeps: its record (``c``), the model's host the twin
    makes of it (``twin``: its name, role, label, routes, sysctls, the hosts it stands
    for), and the links and ``lo`` addresses it keeps as collected, which the import
    still computes with (:meth:`_Importer.host` makes them ``twin``'s at the end)."""

    c: CollectedHost
    twin: Host
    ifaces: list[_KeptLink] = field(default_factory=list)
    lo: list[CollectedAddress] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.twin.name

    @property
    def role(self) -> Role:
        return self.twin.role

    def veths(self) -> list[_KeptLink]:
        return [i for i in self.ifaces if i.kind == "veth"]

    def all_addrs(self) -> list[CollectedAddress]:
        return [a for i in self.ifaces for a in i.addrs] + self.lo


def _release(line: str) -> str:
    """The kernel release in a collected ``uname.txt`` line (``uname -r``, or ``uname
    -a``'s third word): its first word that looks like one; empty if none."""
    m = re.search(r"(?<!\S)\d+\.\d+[0-9A-Za-z.+~_-]*", line)
    return m.group(0) if m else ""


def _kept_addr(a: CollectedAddress) -> bool:
    ip = a.addr
    return not (ip.is_loopback or (ip.version == 6 and ip.is_link_local))


def import_cluster(dirs: list[str | Path], *, roles: dict[str, str] | None = None,
                   anonymize: bool = False, fold: bool = True,
                   name: str = "cluster", allow_scripts: bool = False) -> Imported:
    """Read collected host directories and build the lab's twin of the cluster. What
    in a keepalived.conf would run a program or touch the lab's machine is removed,
    with a note naming ``file:line``, unless ``allow_scripts``; ``anonymize`` removes
    it always (script paths name the cluster)."""
    if anonymize and allow_scripts:
        raise TopologyError("--anonymize removes every script (their paths name the "
                            "cluster): not with --allow-scripts")
    # The import makes millions of objects that all live until it returns: the cyclic
    # collector would walk them again and again as they pile up (at 5,000 services,
    # half the import's time, and growing faster than the input). It makes no cycles
    # to collect: the collector is off while it runs (reference counting still frees).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _Importer(dirs, roles or {}, anonymize, fold, name, allow_scripts).run()
    finally:
        if enabled:
            gc.enable()


class _Importer:
    def __init__(self, dirs: list[str | Path], roles: dict[str, str], anonymize: bool,
                 fold: bool, name: str, allow_scripts: bool = False):
        self.dirs, self.role_args, self.anon, self.fold, self.name = (
            dirs, roles, anonymize, fold, name)
        self.allow_scripts = allow_scripts
        self.notes: list[str] = []
        self.noted: set[str] = set()    # the notes, for a lookup that is not a scan
        self.stripped: list[Stripped] = []
        self.left: list[CollectedHost] = []
        self.vips: set[IP] = set()
        self.held: dict[str, tuple[set[IP], list[set[str]]]] = {}   # see _held

    def note(self, text: str) -> None:
        text = shown(text)   # names and values from the files: no line of their own
        if text not in self.noted:
            self.noted.add(text)
            self.notes.append(text)

    # -- the steps -----------------------------------------------------------------
    def run(self) -> Imported:
        collected = read_hosts(self.dirs)
        if self.anon:  # not the directories' paths: the host names are renamed later
            for c in collected:
                if c.keepalived is not None:
                    c.keepalived.source = f"{c.name}/keepalived.conf"
        seen: dict[str, Path] = {}
        for c in collected:
            if c.name in seen:
                raise bad(str(c.path), f"host {c.name!r} is collected twice (also "
                                        f"{seen[c.name]})")
            seen[c.name] = c.path
        taken = {CLIENT}
        labnames = {c.name: lab_name(c.name, taken) for c in collected}
        roles = self._roles(collected, labnames)

        directors = [c for c in collected if roles.get(c.name) == "director"]
        dsvcs = {c.name: self._director_services(c) for c in directors}
        by_rip = self._by_rip(dsvcs)
        for c in collected:
            if c.name not in roles and c.name not in dsvcs and self._is_realserver(c, by_rip):
                roles[c.name] = "realserver"
        svc_vips = {s.vip for svcs in dsvcs.values() for s in svcs if s.vip is not None}
        for c in collected:
            held = self._local_vips(c) & svc_vips
            if c.name not in roles and held:
                roles[c.name] = "realserver"
                self.note(f"{c.name} holds {summary(held)} on lo or a dummy but is no "
                          "real server of it: kept (a stale VIP changes what it reaches); "
                          "the twin puts it in no service")
        left = [c for c in collected if c.name not in roles]
        self.left = left
        self._missing_files([c for c in collected if c.name in roles], roles)
        for c in left:
            self.note(self._left_out_note(c, by_rip))
        hosts = [_Kept(c, Host(labnames[c.name], "director", label=c.name,
                               kernel=_release(c.kernel))) for c in directors] + [
            _Kept(c, Host(labnames[c.name], "realserver", label=c.name,
                          kernel=_release(c.kernel)))
            for c in collected if roles.get(c.name) == "realserver"]
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
        svcs = self._services(services, hosts, ka)
        self._place_director_vips(svcs, hosts, ka)
        for h in hosts:
            self._routes(h)
            self._sysctls(h)
        kernels = sorted({h.c.kernel for h in hosts if h.c.kernel})
        if self.anon:  # a build string names its maker: the release only
            kernels = sorted({v for k in kernels if (v := kernel_version(k))})
        if kernels:
            self.note(f"collected kernels: {', '.join(kernels)} (kept per host as its "
                      "kernel; drlab gate runs on that series by default)")
        for h in hosts:
            for s in h.c.skipped:
                # no keepalived, or no IPVS table on a real server: nothing was missed
                if s.startswith("keepalived.conf:") and ("-k none" in s or "not found" in s) \
                        or h.role == "realserver" and s.startswith("ipvsadm-save.txt:"):
                    continue
                if self.anon:  # its paths and names are the cluster's: the file only
                    fname = s.split(":", 1)[0]
                    s = (fname if fname in HOST_FILES else "a file") + " (details left out by " \
                        "--anonymize)"
                self.note(f"{h.c.name}: collect skipped: {s}")
        all_hosts = hosts
        if self.fold:
            hosts = self._fold(hosts, svcs)
        client = self._client(hosts, svcs, collected, segments)
        self._keepalived_notes(ka, hosts)

        used = {i.segment for h in hosts for i in h.veths()} | (
            {client.interfaces[0].segment} if client else set())
        t = Topology(self.name, ([client] if client else []) + [self.host(h) for h in hosts],
                     [Segment(s) for s in segments if s in used], svcs)
        if ka:
            twin_ips = {str(a.addr) for h in hosts for a in h.all_addrs()}
            for n, cfg in ka.items():
                text = cfg.text
                if not self.allow_scripts:  # first: its lines are the file's
                    text, found = strip_scripts(text, cfg.source)
                    if self.anon:  # the scripts' names are the cluster's
                        found = [replace(f, names=()) for f in found]
                    self.stripped += found
                    for f in found:
                        self.note(f.note())
                text, gone = strip_real_servers(text, twin_ips)
                if gone:
                    self.note(f"{cfg.source}: the twin runs it without the real_server "
                              f"blocks of {_span(gone)} (folded or not collected), so "
                              "keepalived balances over the hosts the twin has")
                t.keepalived[labnames[n]] = text
        names = {h.name: h.c.name for h in hosts}
        if self.anon:
            t, names = self._anonymize(t, names, all_hosts, collected, labnames)
        t.waive = frozenset(self._waivers(t))
        # what the loader checks of every text a file holds, the rest by validation
        check_text(t.name, "name")
        for n, text in t.keepalived.items():
            check_text(text, f"keepalived.{n}", lines=True)
        for k, svc in enumerate(t.services):
            if svc.persistence_netmask is not None:
                check_text(svc.persistence_netmask, f"services[{k}].persistence_netmask")
        return Imported(validated(t), self.notes, names, self.stripped)

    # -- roles ---------------------------------------------------------------------
    def _roles(self, collected: list[CollectedHost], labnames: dict[str, str]) -> dict[str, str]:
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

    def _missing_files(self, collected: list[CollectedHost], roles: dict[str, str]) -> None:
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
    def _local_vips(c: CollectedHost) -> set[IP]:
        """Addresses ``c`` holds on lo or a NOARP/dummy link (where DR puts a VIP)."""
        out: set[IP] = set()
        for link in c.links:
            if link.name == "lo" or link.kind == "dummy" or link.noarp:
                out |= {a.addr for a in link.addrs}
        return out

    @staticmethod
    def _by_rip(dsvcs: dict[str, list[CollectedService]]
                ) -> dict[IP, list[tuple[CollectedService, IP]]]:
        """Real server address -> (service, that address), over every director's
        table: what a host's addresses make it, in one lookup per address."""
        out: dict[IP, list[tuple[CollectedService, IP]]] = {}
        for svcs in dsvcs.values():
            for s in svcs:
                for r in s.reals:
                    out.setdefault(r.ip, []).append((s, r.ip))
        return out

    def _is_realserver(self, c: CollectedHost, by_rip: dict[IP, list[tuple[CollectedService, IP]]]
                       ) -> bool:
        """A real server of a service: one of its RIPs, holding its VIP. A RIP without
        the VIP is a real server too (IPVS sends it traffic it drops: the
        missing-vip-on-rs mistake), said in a note."""
        mine = c.addresses()
        svcs = [s for ip in mine for s, rip in by_rip.get(ip, [])
                if s.vip is not None and rip != s.vip]
        lacking = sorted({s.shown for s in svcs if s.vip not in mine})
        if lacking:
            self.note(f"{c.name} is a real server of {', '.join(lacking)} (its address is in "
                      "the IPVS table) but holds no VIP of it: kept as it is")
        return bool(svcs)

    def _left_out_note(self, c: CollectedHost, by_rip: dict[IP, list[tuple[CollectedService, IP]]]
                       ) -> str:
        rips = sorted({f"{rip} of {s.shown}" for ip in c.addresses()
                       for s, rip in by_rip.get(ip, [])})
        why = ("it has no IPVS table and holds no VIP of a service whose real server it is"
               if not rips else f"it is real server {rips[0]} but holds no VIP of it")
        return (f"{c.name} is neither a director nor a real server ({why}): left out; "
                f"--role {c.name}=director or --role {c.name}=realserver brings it in")

    # -- services ------------------------------------------------------------------
    def _director_services(self, c: CollectedHost) -> list[CollectedService]:
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

    def _fwmark_from_ka(self, s: CollectedService, c: CollectedHost) -> bool:
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

    def _ka_services(self, cfg: KaConfig) -> list[CollectedService]:
        out = []
        for vs in cfg.virtual_servers:
            where = f"{cfg.source}:{vs.line}"
            sched = (vs.scheduler or "wlc").lower()
            if sched not in SCHEDULERS:
                raise bad(where, f"lb_algo {sched!r}: not an IPVS scheduler")
            gran = vs.granularity
            vip = ip_address(vs.vip) if vs.vip else None
            family = vip.version if vip else (
                ip_address(vs.real_servers[0].ip).version if vs.real_servers else 4)
            fwd = {"DR": "g", "NAT": "m", "TUN": "i"}.get((vs.lb_kind or "NAT").upper(), "m")
            s = CollectedService(vs.protocol, vip, vs.port, vs.fwmark, family, sched, where,
                                 vs.persistence, gran if vs.persistence else None)
            s.reals = [CollectedReal(ip_address(r.ip), r.port, fwd, r.weight,
                                     f"{cfg.source}:{r.line}") for r in vs.real_servers]
            out.append(s)
        return out

    def _merge(self, dsvcs: dict[str, list[CollectedService]], hosts: dict[str, _Kept]
               ) -> list[tuple[CollectedService, str]]:
        """One service per key, each on its director (the VIP's holder, or the VRRP
        MASTER); directors with differing tables keep each their own services."""
        keys: dict[tuple[str, str | int | None, int], list[tuple[str, CollectedService]]] = {}
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

    def _director_rank(self, c: CollectedHost, s: CollectedService) -> tuple[int, int, int]:
        held, instances = self._held(c)
        holds = s.vip in held
        master, prio = 0, 0
        if c.keepalived is not None:
            for i, ivips in zip(c.keepalived.instances, instances, strict=True):
                if str(s.vip) in ivips:
                    master = int((i.state or "").upper() == "MASTER")
                    prio = i.priority or 0
        return (-int(holds), -master, -prio)

    def _held(self, c: CollectedHost) -> tuple[set[IP], list[set[str]]]:
        """The addresses ``c`` holds on interfaces other than ``lo``, and each of its
        VRRP instances' VIPs: sets made once per host (a lookup per service, not a scan:
        a scan made the import quadratic in the services)."""
        got = self.held.get(c.name)
        if got is None:
            got = self.held[c.name] = (
                {a.addr for ln in c.links if ln.kind != "loopback" for a in ln.addrs},
                [set(i.vips) for i in (c.keepalived.instances if c.keepalived else [])])
        return got

    def _services(self, services: list[tuple[CollectedService, str]], hosts: list[_Kept],
                  ka: dict[str, KaConfig]) -> list[VirtualService]:
        owner: dict[IP, _Kept] = {}
        for h in hosts:
            for a in h.all_addrs():
                if a.addr not in self.vips:
                    owner.setdefault(a.addr, h)
        left: dict[IP, str] = {}
        for c in self.left:
            for ip in c.addresses():
                left.setdefault(ip, c.name)
        by = {h.c.name: h for h in hosts}
        out = []
        for s, d in services:
            rss: list[RealServer] = []
            in_rss: set[str] = set()
            for r in s.reals:
                if r.fwd != "g":
                    kind = {"m": "masquerading (NAT, -m)", "i": "tunnel (-i)"}[r.fwd]
                    self.note(f"real server {r.ip} of {s.shown} forwards by {kind}: this lab "
                              "is DR only: left out")
                    continue
                rs = owner.get(r.ip)
                if rs is None:
                    if r.ip in left:
                        self.note(f"real server {r.ip} of {s.shown} is {left[r.ip]}, which is "
                                  "left out (see above)")
                    else:
                        self.note(f"real server {r.ip} of {s.shown} was not collected: "
                                  "left out")
                    continue
                if rs.name in in_rss:
                    self.note(f"{s.shown}: {rs.c.name} is listed twice; the twin keeps it once")
                    continue
                if s.fwmark is None and r.port != s.port:
                    self.note(f"real server {r.ip}:{r.port} of {s.shown}: DR does not map "
                              f"ports, it receives port {s.port}")
                rss.append(RealServer(rs.name, r.weight, self._listen_mode(rs, s)))
                in_rss.add(rs.name)
            if not rss:
                self.note(f"{s.shown} on {d}: no collected DR real server: left out")
                continue
            for e in s.extras:
                self.note(f"{s.shown}: {e} is not reproduced in the twin")
            assert s.vip is not None
            out.append(VirtualService(
                str(s.vip), s.port, by[d].name, rss, "udp" if s.protocol == "udp" else "tcp",
                s.scheduler, s.persistence, s.netmask if s.persistence is not None else None,
                s.fwmark))
        return out

    def _listen_mode(self, h: _Kept, s: CollectedService) -> Listen:
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
    def _interfaces(self, h: _Kept, vips: set[IP]) -> None:
        kinds: dict[str, list[str]] = {}
        for ln in h.c.links:
            addrs = [a for a in ln.addrs if _kept_addr(a)]
            if ln.kind == "loopback":
                h.lo += addrs
                continue
            if not any(a.scope == "global" or a.addr in vips for a in addrs):
                continue
            only_vips = all(a.addr in vips for a in addrs)
            kind: Literal["veth", "dummy"]
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
            h.ifaces.append(_KeptLink(ln.name, kind, addrs, ln.mtu))
        for k, names in kinds.items():
            self.note(f"{h.c.name}: {k} interface(s) {', '.join(names)} become veths on "
                      "their segments")

    def _drop_shared(self, hosts: list[_Kept], vips: set[IP]) -> None:
        """Addresses (not VIPs) on several hosts are host-local bridges (docker0,
        virbr0) or anycast: the twin cannot have them twice."""
        holders: dict[IP, list[_Kept]] = {}
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

    def _segments(self, hosts: list[_Kept], vips: set[IP]) -> list[str]:
        """Interfaces whose subnets overlap share a segment: lan, lan2, ... by first
        appearance (directors come first)."""
        parent: dict[int, int] = {}

        def find(x: int) -> int:
            while parent.setdefault(x, x) != x:
                parent[x] = parent[parent[x]]   # path halving
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
        # two prefixes overlap only when one holds the other: in address order (the
        # wider first), each joins the innermost one still open around it (n log n;
        # the pairwise check was quadratic in the number of subnets)
        open_: list[IPNet] = []
        for net in sorted(nets, key=lambda x: (x.version, int(x.network_address), x.prefixlen)):
            while open_ and (open_[-1].version != net.version
                             or int(open_[-1].broadcast_address) < int(net.network_address)):
                open_.pop()
            if open_:
                parent[find(nets[net])] = find(nets[open_[-1]])
            open_.append(net)
        plens = {v: sorted({x.prefixlen for x in nets if x.version == v}) for v in (4, 6)}

        def holder(ip: IP) -> int | None:
            """The interface of a subnet holding ``ip`` (all such subnets nest, so
            they are on one segment already)."""
            for plen in plens[ip.version]:
                n = nets.get(ipaddress.ip_network((ip, plen), strict=False))
                if n is not None:
                    return n
            return None

        by_vip: dict[IP, int] = {}
        for n, i in enumerate(ifaces):
            if any(a.addr not in vips and a.ip.network.prefixlen < _full(a.addr)
                   for a in i.addrs):
                continue
            home = next((n for n in map(holder, (a.addr for a in i.addrs))
                         if n is not None), None)
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

    def _place_director_vips(self, svcs: list[VirtualService], hosts: list[_Kept],
                             ka: dict[str, KaConfig]) -> None:
        by = {h.name: h for h in hosts}
        if ka:
            for h in hosts:
                if h.role != "director":
                    continue
                placed = {ip_address(v) for i in (ka[h.c.name].instances
                                                            if h.c.name in ka else [])
                          for v in i.vips}
                gone = [f"{summary(ips)} on {dev}" for dev, ips in (
                    *((i.name, [a.addr for a in i.addrs if a.addr in placed])
                      for i in h.ifaces), ("lo", [a.addr for a in h.lo if a.addr in placed]))
                        if ips]
                stray = [f"{summary(ips)} on {i.name}" for i, ips in (
                    (i, [a.addr for a in i.addrs if a.addr in self.vips and a.addr not in placed])
                    for i in h.ifaces) if ips]
                drop = placed | self.vips
                for i in h.ifaces:
                    i.addrs = [a for a in i.addrs if a.addr not in drop]
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
            d = by[s.director]
            vip = ipaddress.ip_address(s.vip)
            if any(a.addr == vip for i in d.veths() for a in i.addrs):
                continue
            rips = {ipaddress.ip_address(a.ip.ip) for r in s.real_servers
                    for a in by[r.host].all_addrs()}
            lan = next((i for i in d.veths() for a in i.addrs
                        if any(ip in a.ip.network for ip in rips if ip != vip)),
                       d.veths()[0] if d.veths() else None)
            if lan is None:
                continue
            lan.addrs.append(CollectedAddress(ipaddress.ip_interface(f"{vip}/{_full(vip)}")))
            self.note(f"{d.c.name} holds the VIP {vip} on no interface (routed to it?): the "
                      f"twin puts it on {lan.name}")

    def _routes(self, h: _Kept) -> None:
        kept = {i.name for i in h.veths()}
        nets = [a.ip.network for i in h.veths() for a in i.addrs if a.addr not in self.vips]
        seen: set[tuple[str, int]] = set()
        dropped = []
        for src, r in h.c.routes:
            if r.protocol == "kernel" or (r.type or "unicast") != "unicast" \
                    or r.table not in (None, "main"):
                continue
            dst = r.dst or ""
            try:
                if dst != "default":
                    net = ipaddress.ip_network(dst if "/" in dst else
                                               f"{dst}/{_full(ipaddress.ip_address(dst))}",
                                               strict=False)
                    dst = str(net)
                    if net.version == 6 and (net.is_link_local or net.is_multicast):
                        continue
                via = ipaddress.ip_address(r.gateway) if r.gateway else None
            except ValueError:
                raise bad(src, f"route {r.dst!r}: not an address or prefix") from None
            family = (via.version if via else 6 if ":" in dst
                      else 6 if "6" in Path(src).name else 4)
            shown = f"{dst}" + (f" via {via}" if via else "") + f" dev {r.dev}"
            if r.nexthops or (r.dev is not None and r.dev not in kept):
                dropped.append(shown)
                continue
            if (dst, family) in seen:
                continue
            if via is not None:
                if not any(via in n for n in nets):
                    dropped.append(shown)
                    continue
                h.twin.routes.append(Route(dst, via=str(via)))
            elif r.dev is not None and r.dev in kept:
                h.twin.routes.append(Route(dst, dev=r.dev))
            else:
                dropped.append(shown)
                continue
            seen.add((dst, family))
        if dropped:
            self.note(f"{h.c.name}: route(s) {'; '.join(dropped[:4])}"
                      f"{' ...' if len(dropped) > 4 else ''} left out (via an interface or "
                      "gateway the twin does not have)")

    def _sysctls(self, h: _Kept) -> None:
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
                value = h.c.sysctls[raw]
                if not re.fullmatch(r"-?[0-9]{1,10}( -?[0-9]{1,10})*", value):
                    self.note(f"{h.c.name}: {raw} = {clip(value)} is not a number: left out")
                    continue
                out[key] = value
        h.twin.sysctls = out

    # -- folding -------------------------------------------------------------------
    def _signature(self, h: _Kept, entries: dict[str, list[tuple[int, int, str]]]
                   ) -> tuple[object, ...]:
        def shape(a: CollectedAddress) -> tuple[str, int, str, int]:
            return (str(a.addr) if a.addr in self.vips else "-", a.ip.network.prefixlen,
                    a.scope, a.addr.version)

        return (
            tuple(entries.get(h.name, [])),
            tuple(sorted(h.twin.sysctls.items())),
            tuple((i.name, i.kind, i.segment, i.mtu, tuple(sorted(map(shape, i.addrs))))
                  for i in h.ifaces),
            tuple(sorted(map(shape, h.lo))),
            tuple((r.dst, r.via, r.dev) for r in h.twin.routes),
        )

    def _fold(self, hosts: list[_Kept], svcs: list[VirtualService]) -> list[_Kept]:
        entries: dict[str, list[tuple[int, int, str]]] = {}  # host -> its place in services
        for n, s in enumerate(svcs):
            for r in s.real_servers:
                entries.setdefault(r.host, []).append((n, r.weight, r.listen))
        classes: dict[tuple[object, ...], list[_Kept]] = {}
        for h in hosts:
            if h.role == "realserver":
                classes.setdefault(self._signature(h, entries), []).append(h)
        folded = [c for c in classes.values() if len(c) > 2]
        if not folded:
            return hosts
        gone: set[str] = set()
        parts = []
        for members in folded:
            keep, rest = members[:2], members[2:]
            half = (len(rest) + 1) // 2
            keep[0].twin.represents = [h.c.name for h in rest[:half]]
            keep[1].twin.represents = [h.c.name for h in rest[half:]]
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
            s.real_servers = [r for r in s.real_servers if r.host not in gone]
        return [h for h in hosts if h.name not in gone]

    def _keepalived_notes(self, ka: dict[str, KaConfig], hosts: list[_Kept]) -> None:
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
    def _client(self, hosts: list[_Kept], svcs: list[VirtualService],
                collected: list[CollectedHost], segments: list[str]) -> Host | None:
        by = {h.name: h for h in hosts}
        lan: _KeptLink | None = None
        if svcs:
            d = by[svcs[0].director]
            rs_segs = [{i.segment for i in by[r.host].veths()}
                       for r in svcs[0].real_servers]
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
                    taken.add(ipaddress.ip_address(r.gateway or ""))
                except ValueError:
                    pass
            if c.keepalived is not None:
                for vs in c.keepalived.virtual_servers:
                    taken |= {ip_address(r.ip) for r in vs.real_servers}
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
        routed: list[IP] = []
        for vip in sorted({ipaddress.ip_address(s.vip) for s in svcs},
                          key=lambda v: (v.version, v)):
            mine = [a for a in addrs if a.version == vip.version]
            if not mine:
                self.note(f"the lab client has no IPv{vip.version} address on {lan.segment}: "
                          f"it cannot reach the VIP {vip}")
            elif not any(vip in a.network for a in mine):
                routed.append(vip)
        # one route per VIP, aggregated as a router would: the fewest prefixes that
        # hold exactly these VIPs (no other address)
        routes = [Route(str(net), dev="eth0") for net in aggregate(routed)]
        owner = next(h for h in hosts if lan in h.ifaces)
        shown = (", ".join(r.dst for r in routes) if len(routes) <= 8 else
                 f"{len(routes)} prefixes holding {summary(routed)}")
        self.note(f"lab client at {', '.join(str(a) for a in addrs)} on {lan.segment} (the "
                  f"segment of {owner.c.name}'s {lan.name})"
                  + (f", with {shown} routed on the LAN as a router would" if routes else ""))
        for svc in svcs:
            d = by[svc.director]
            if lan.segment not in {i.segment for i in d.veths()}:
                self.note(f"{svc.vip}:{svc.port}/{svc.protocol} is on {d.c.name}, which is "
                          f"not on the client's segment {lan.segment}")
        return Host(CLIENT, "client",
                    [Interface("eth0", lan.segment, [Address(str(a)) for a in addrs])],
                    routes=routes, label="(lab client)")

    # -- output --------------------------------------------------------------------
    @staticmethod
    def host(h: _Kept) -> Host:
        """The model's host of ``h``, with the links and addresses kept (an MTU of 1500
        unsaid)."""
        def iface(i: _KeptLink) -> Interface:
            return Interface(i.name, i.segment if i.kind == "veth" else "",
                             [a.address() for a in i.addrs],
                             i.mtu if i.mtu is not None and i.mtu != 1500 else None, i.kind)

        h.twin.interfaces = [iface(i) for i in h.ifaces if i.kind == "veth"]
        h.twin.dummies = [iface(i) for i in h.ifaces if i.kind == "dummy"]
        h.twin.lo = [a.address() for a in h.lo]
        return h.twin

    def _waivers(self, t: Topology) -> list[str]:
        waive = set()
        vips = t.vips
        on_veth: dict[str, set[str]] = {}   # VIP -> hosts with it on an interface
        veth_vips: set[str] = set()
        outside = False
        for h in t.hosts:
            for i in [*h.interfaces, *h.dummies]:
                for a in i.addresses:
                    ip = a.interface.ip
                    outside |= not in_doc_range(ip)
                    if str(ip) in vips:
                        on_veth.setdefault(str(ip), set()).add(h.name)
                        veth_vips |= {str(ip)} if i.kind != "dummy" else set()
            for a in h.lo:
                iface = a.interface
                outside |= not in_doc_range(iface.ip)
                if str(iface.ip) in vips and iface.network.prefixlen != _full(iface.ip):
                    waive.add("vip-lo-prefix")
                    self.note(f"{h.shown} has the VIP {iface} on lo with a wider "
                              "prefix than /32 (/128), as in production")
            for r in h.routes:
                if r.dst != "default":
                    net = ipaddress.ip_network(r.dst)
                    outside |= not net_in_doc_range(net)
                if r.via is not None:
                    outside |= not in_doc_range(ipaddress.ip_address(r.via))
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

    def _anonymize(self, t: Topology, names: dict[str, str], hosts: list[_Kept],
                   collected: list[CollectedHost], labnames: dict[str, str]
                   ) -> tuple[Topology, dict[str, str]]:
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
        for th in t.hosts:
            if th.name != CLIENT:
                th.name = th.label = lab_to_new[th.name]
                th.represents = [new[x] for x in th.represents]
        for s in t.services:
            s.director = lab_to_new[s.director]
            s.real_servers = [replace(r, host=lab_to_new[r.host]) for r in s.real_servers]
        t.keepalived = {lab_to_new[k]: v for k, v in t.keepalived.items()}
        ifnames = interface_names([ln.name for c in collected for ln in c.links],
                                  {ln.name for c in collected for ln in c.links
                                   if ln.kind == "dummy"})
        # lab.model.anonymize maps TOML-shaped data (its addresses, keepalived texts and
        # notes alike): the file's form and back, its texts checked as a file's are
        data, self.notes = anonymize_topology(topology_to_dict(t, full=True), new,
                                              self.notes, ifnames)
        return (topology_from_dict(data, validate=False),
                {lab_to_new[ln]: cn for ln, cn in names.items()})

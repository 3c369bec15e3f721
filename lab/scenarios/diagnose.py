"""``drlab diagnose``: build the twin of a cluster, measure it, name what is wrong.

For every service of the topology (an imported cluster, usually) the twin is
measured as ``drlab check`` measures a lab: the ARP (NDP) census of the VIP from
the client's first hop, connections through the VIP with the DR path proof of
each, the first hop's neighbour entry for the VIP afterwards; hosts that hold a
VIP without being a real server of it connect to it themselves. Every measured
symptom is then matched to the catalogue scenario that explains it, by what the
twin's hosts are (where they hold the VIP, their ARP sysctls, how their service
listens, whether they share the director's segment): a :class:`Finding` names
the scenario, the hosts by their collected names, the symptom, the evidence and
the catalogue's fix. A measured symptom no scenario explains is reported as
``unexplained``, never dropped.

Symptoms are :class:`lab.probes.labcheck.Symptom` data from the probe to here, and
matched by their kind, not their text. Every scenario diagnose names is looked up
in the catalogue when this module is imported (:func:`scenario`), so a misspelt
name fails there, not as a finding without a fix.

Some failures need a stimulus the twin does not run (a real server deleted, a
client reusing ports, a failover): those findings come from the configuration
alone and say so (``measured`` false, "prediction").
"""

from __future__ import annotations

import copy
import ipaddress
import platform
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from lab.builder import Lab
from lab.builder.sysctl import PINNED_CONF
from lab.errors import LabError, UsageError
from lab.model import Host, Topology, VirtualService, topology_to_dict
from lab.model.keepalived import parse as parse_keepalived
from lab.model.sample import DEFAULT_SEED, Sample, sample
from lab.probes import arp, labcheck, ndp, path, vrrp
from lab.probes.labcheck import Symptom, SymptomKind, connection_failed
from lab.probes.labcheck import answers_arp as arp_symptom
from lab.roles import client, director, up
from lab.scenarios.base import Scenario
from lab.scenarios.catalogue import REGISTRY
from lab.util import Progress


def scenario(name: str) -> Scenario:
    """The catalogue's scenario ``name``. The references below call it when the module
    is imported: a name the catalogue lacks raises there."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise LookupError(f"diagnose names {name!r}, which is no scenario of the "
                          "catalogue") from None


# every scenario a finding of diagnose can name
VIP_ON_LAN = scenario("vip-on-lan-interface")
IPV6_VIP_ON_LAN = scenario("ipv6-vip-on-lan-interface")
NOARP_DUMMY = scenario("noarp-dummy-vip")
WIDE_PREFIX_ON_LO = scenario("vip-wide-prefix-on-lo")
SYSCTLS_ON_LO_ONLY = scenario("sysctls-on-lo-only")
ARP_IGNORE_3_SCOPE = scenario("arp-ignore-3-scope")
RS_ANSWERS_ARP = scenario("rs-answers-arp")
STALE_VIP = scenario("stale-vip-on-lo")
ANNOUNCE_POISONING = scenario("arp-announce-poisoning")
DIRECTOR_VIP_PRIMARY = scenario("director-vip-primary")
RS_NOT_ON_LINK = scenario("rs-not-on-link")
MISSING_VIP = scenario("missing-vip-on-rs")
HEALTHCHECK_RIP_ONLY = scenario("healthcheck-on-rip-only")
VRRP_STRICT = scenario("vrrp-strict-drops-vip")
RP_FILTER_MULTIHOMED = scenario("rp-filter-multihomed")
GATEWAY_IS_DIRECTOR = scenario("rs-gateway-is-director")
CONN_REUSE_STALL = scenario("conn-reuse-stall")
#: All of them (a unit test holds them to the registry).
NAMED = (VIP_ON_LAN, IPV6_VIP_ON_LAN, NOARP_DUMMY, WIDE_PREFIX_ON_LO, SYSCTLS_ON_LO_ONLY,
         ARP_IGNORE_3_SCOPE, RS_ANSWERS_ARP, STALE_VIP, ANNOUNCE_POISONING,
         DIRECTOR_VIP_PRIMARY, RS_NOT_ON_LINK, MISSING_VIP, HEALTHCHECK_RIP_ONLY, VRRP_STRICT,
         RP_FILTER_MULTIHOMED, GATEWAY_IS_DIRECTOR, CONN_REUSE_STALL)
#: The name of a finding no scenario explains.
UNEXPLAINED = "unexplained"


#: Scenarios that are a fault of the host, whatever VIP it serves (its sysctls, its
#: routes): one finding per host, naming every service it shows in (``services``).
HOST_WIDE = (SYSCTLS_ON_LO_ONLY, RS_ANSWERS_ARP, ANNOUNCE_POISONING, NOARP_DUMMY,
             RP_FILTER_MULTIHOMED, GATEWAY_IS_DIRECTOR, CONN_REUSE_STALL)


@dataclass
class Finding:
    """One fault: the scenario that explains it, the hosts (collected names) and the
    service(s) it shows in.

    Two runs (a twin before and after a change) compare findings by :attr:`key`,
    ``(name, hosts, service)``: the scenario's name (or ``unexplained``), the hosts
    as a tuple in the order found, and the service's key (``VIP:PORT/PROTO``), or
    ``"*"`` for a host-wide fault (:data:`HOST_WIDE`: one finding for the host,
    whichever services it shows in, listed in :attr:`services`; :attr:`service`
    shows them joined by ``", "``)."""

    #: The catalogue's scenario that explains it; None: none does (``unexplained``).
    scenario: Scenario | None
    hosts: list[str]
    service: str
    symptom: str
    evidence: list[str]
    fix: str
    #: False: only the configuration says so (a prediction), the twin did not show it.
    measured: bool = True
    #: Every service it shows in (one, unless a host-wide fault shows in several).
    services: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.services:
            self.services = [self.service]

    @property
    def name(self) -> str:
        return self.scenario.name if self.scenario else UNEXPLAINED

    @property
    def key(self) -> tuple[str, tuple[str, ...], str]:
        """What identifies the finding across two diagnoses: name, hosts, service
        (``"*"`` for a host-wide fault)."""
        return self.name, tuple(self.hosts), "*" if self.scenario in HOST_WIDE else self.service

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "hosts": self.hosts, "service": self.service,
                "services": self.services, "symptom": self.symptom,
                "evidence": self.evidence, "fix": self.fix, "measured": self.measured}


class RsStatus(Enum):
    """What the twin showed of one real server of a service (its value in JSON)."""

    #: A connection through the director was scheduled to it and completed (for
    #: TCP, with the DR path proven).
    VERIFIED = "verified"
    #: A connection through the director was scheduled to it and failed, or its
    #: path was wrong.
    FAILED = "failed"
    #: No connection reached it: nothing is known of it (never a tick).
    NOT_VERIFIED = "not-verified"


@dataclass
class RealServerCheck:
    """One real server measured through the director: the client's neighbour entry
    for the VIP pinned to the director holding it, every other real server of the
    service out of the director's table for the pass."""

    host: str
    status: RsStatus
    #: What happened (the client's error, the path's problems, who served instead).
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "status": self.status.value, "detail": self.detail}


#: A path problem's connection: ``web3 192.0.2.254:51192: `` (the host kept).
_CONNECTION = re.compile(r"^(\S+) \S+:\d+: ")


@dataclass
class ServiceResult:
    """What the twin did for one service."""

    service: str
    director: str
    census: list[str]
    connections: int
    failed: list[str]
    distribution: dict[str, int]
    vip_entry: str | None
    symptoms: list[Symptom]
    ladder: str = ""
    #: Connections (as the cluster is) that did not pass through the director: the
    #: client's neighbour entry for the VIP had moved to a real server.
    bypassed: int = 0
    #: Each real server measured through the director (:func:`through_director`);
    #: empty when that pass did not run.
    real_servers: list[RealServerCheck] = field(default_factory=list)

    def status(self, host: str) -> RsStatus:
        """What the pass through the director showed of real server ``host``."""
        return next((r.status for r in self.real_servers if r.host == host),
                    RsStatus.NOT_VERIFIED)

    def grouped_symptoms(self) -> list[tuple[str, int]]:
        """The symptoms' texts, each once, with how many times it was measured (a
        path problem without the connection it was seen on: ``web3: no request to
        the director's MAC ...`` ×6)."""
        return list(Counter(_CONNECTION.sub(r"\1: ", s.text()) if s.kind is SymptomKind.PATH
                            else s.text() for s in self.symptoms).items())

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "symptoms": [s.text() for s in self.symptoms],
                "real_servers": [r.to_json() for r in self.real_servers]}


@dataclass
class Diagnosis:
    cluster: str
    kernel: str
    #: The cluster's topology as it was given (the twin's model).
    topology: Topology
    services: list[ServiceResult] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "cluster": self.cluster, "kernel": self.kernel,
                "findings": [f.to_json() for f in self.findings],
                "services": [s.to_json() for s in self.services], "notes": self.notes,
                "topology": topology_to_dict(self.topology)}

    def text(self) -> str:
        lines = [f"twin of {self.cluster} on kernel {self.kernel}: "
                 f"{len(self.services)} service(s) measured"]
        for s in self.services:
            lines.append(f"  {s.service} via {s.director}: census {', '.join(s.census) or '-'}; "
                         f"{s.connections - len(s.failed)}/{s.connections} connections; "
                         "spread " + (", ".join(f"{k} {v}" for k, v in
                                                sorted(s.distribution.items())) or "-")
                         + (f"; {s.bypassed} bypassed the director" if s.bypassed else ""))
            if s.real_servers:
                lines.append("    through the director: " + ", ".join(
                    f"{r.host} {r.status.value}" for r in s.real_servers))
        for f in self.findings:
            tag = "" if f.measured else " (prediction: not measured in the twin)"
            lines += [f"FINDING {f.name}{tag}: {', '.join(f.hosts)} [{f.service}]",
                      f"  symptom:  {f.symptom}"]
            lines += [f"  evidence: {e}" for e in f.evidence]
            lines.append(f"  fix:      {f.fix}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append("OK: no finding" if self.ok else f"{len(self.findings)} finding(s)")
        return "\n".join(lines)


# -- what the twin's hosts are ------------------------------------------------------


def conf(h: Host, dev: str, knob: str) -> int:
    """The value of ``net.ipv4.conf.<dev>.<knob>`` the twin has on ``h``."""
    return int(h.sysctls.get(f"net.ipv4.conf.{dev}.{knob}", PINNED_CONF.get(knob, "0")))


def effective(h: Host, dev: str, knob: str) -> int:
    """What the kernel acts on: the max of ``all`` and the device (ARP, rp_filter)."""
    return max(conf(h, "all", knob), conf(h, dev, knob))


def vip_place(t: Topology, h: Host, vip: str) -> tuple[str, int, str] | None:
    """Where ``h`` holds ``vip``: ``("lo" | "dummy" | "lan", prefixlen, scope)``."""
    for a in h.lo:
        if a.ip == vip:
            return "lo", a.prefixlen, a.scope
    for i in h.dummies:
        for a in i.addresses:
            if a.ip == vip:
                return "dummy", a.prefixlen, a.scope
    for i in h.interfaces:
        for a in i.addresses:
            if a.ip == vip:
                return "lan", a.prefixlen, a.scope
    return None


def vip_places(h: Host) -> dict[str, tuple[str, int, str]]:
    """Every address ``h`` holds -> where, as :func:`vip_place` says it: made once per
    host for a loop over every service (a scan per service made diagnose of 5,000
    services on lo quadratic: 42 s of 5,000 x 3 lookups in lists of 5,000, on the host)."""
    out: dict[str, tuple[str, int, str]] = {}
    for kind, addrs in (("lo", h.lo), *(("dummy", i.addresses) for i in h.dummies),
                        *(("lan", i.addresses) for i in h.interfaces)):
        for a in addrs:
            out.setdefault(a.ip, (kind, a.prefixlen, a.scope))
    return out


def _lan(t: Topology, host: str) -> str:
    try:
        return t.lan_iface(host)
    except LookupError:
        return t.host(host).interfaces[0].name if t.host(host).interfaces else "lo"


def _finding(s: Scenario, t: Topology, hosts: list[str], svc: VirtualService,
             evidence: list[str], measured: bool = True, symptom: str | None = None) -> Finding:
    return Finding(s, [t.host(h).shown for h in hosts], svc.key, symptom or s.symptom,
                   evidence, s.fix, measured)


def answers_arp(t: Topology, svc: VirtualService, h: Host) -> Scenario:
    """Which catalogue scenario explains ``h`` (not the director) answering who-has VIP."""
    place = vip_place(t, h, svc.vip)
    dev = _lan(t, h.name)
    full = 32 if svc.family == 4 else 128
    if place is not None and place[0] == "lan":
        return IPV6_VIP_ON_LAN if svc.family == 6 else VIP_ON_LAN
    if place is not None and place[0] == "dummy" and effective(h, dev, "arp_ignore") == 0:
        return NOARP_DUMMY
    if place is not None and place[0] == "lo" and place[1] != full:
        return WIDE_PREFIX_ON_LO
    if effective(h, dev, "arp_ignore") == 0 and conf(h, "lo", "arp_ignore") >= 1:
        return SYSCTLS_ON_LO_ONLY
    if effective(h, dev, "arp_ignore") == 3 and place is not None and place[2] != "host":
        return ARP_IGNORE_3_SCOPE
    return RS_ANSWERS_ARP


def _shares_segment(t: Topology, a: str, b: str) -> bool:
    return bool({i.segment for i in t.host(a).interfaces}
                & {i.segment for i in t.host(b).interfaces})


def _vip_primary(t: Topology, director: str, vip: str) -> bool:
    """The director's VIP is the primary address of its LAN subnet (it came first with
    a prefix covering the director's own address)."""
    for i in t.host(director).interfaces:
        v4 = [a for a in i.addresses if a.family == 4]
        for n, a in enumerate(v4):
            if a.ip == vip:
                return any(b.ip != vip and ipaddress.ip_address(b.ip) in a.interface.network
                           for b in v4[n + 1:])
    return False


# -- the measurements ---------------------------------------------------------------


def _measure(lab: Lab, svc: VirtualService, connections: int,
             progress: Callable[[str], None]) -> ServiceResult:
    t = lab.topology
    progress(f"diagnose: {svc.key}: census, {connections} connections, path proof ...")
    if svc.protocol == "tcp":
        r = labcheck.check(lab, connections=connections)
        bypassed = sum(1 for c in r.proof.connections if c.request_at_director is None)
        res = ServiceResult(svc.key, r.director, sorted(r.census.hosts), connections,
                            list(r.proof.failed), dict(r.distribution), r.vip_entry,
                            r.symptoms, r.proof.ladder(), bypassed)
        return res
    hop = path.first_hop(lab)
    census = (ndp.ndp_census(lab, asker=hop) if svc.family == 6
              else arp.census(lab, asker=hop, iface=t.lan_iface(hop)))
    failed: list[str] = []
    dist: dict[str, int] = {}
    for _ in range(connections):
        try:
            rep = client.connect(lab, protocol="udp", timeout=1.5)
            dist[rep.server] = dist.get(rep.server, 0) + 1
        except client.ConnectError as e:
            failed.append(str(e))
    symptoms = [arp_symptom(h, svc.vip) for h in sorted(census.hosts - {svc.director})]
    symptoms += [connection_failed(svc.vip, f) for f in failed]
    return ServiceResult(svc.key, svc.director, sorted(census.hosts), connections, failed,
                         dist, None, symptoms, "path proof: TCP services only")


def _only(rules: str, svc: VirtualService, rip: str) -> str:
    """``ipvsadm -R`` input (``restore_rules``' lines) for ``svc`` alone with its one
    real server ``rip``."""
    spec = director.service_spec(svc)
    dest = f"[{rip}]" if svc.family == 6 else rip
    out = []
    for line in rules.splitlines():
        if line.startswith(f"-A {spec} "):
            out.append(line)
        elif line.startswith(f"-a {spec} -r {dest}") and \
                line.split(" -r ", 1)[1].split()[0] in (dest, f"{dest}:{svc.port}"):
            out.append(line)
    return "\n".join(out) + "\n"


def through_director(lab: Lab, svc: VirtualService, holder: str,
                     progress: Callable[[str], None]) -> list[RealServerCheck]:
    """Reach every real server of ``svc`` (the lab focused on it) through the director
    ``holder``, one pass each.

    The first hop's neighbour entry for the VIP is pinned to ``holder``'s MAC, so a
    real server answering ARP cannot draw the connection; for each pass the
    director's table holds only ``svc`` with that one real server (``ipvsadm -R``:
    its persistence templates go with the old table), and one connection is opened
    (for TCP with the DR path proof). The director's table is restored afterwards
    as it was (``ipvsadm -S -n``, then ``-R``)."""
    t = lab.topology
    hop = path.first_hop(lab)
    progress(f"diagnose: {svc.key}: each real server through {holder}, the client's "
             "VIP entry pinned ...")
    saved = director.ipvsadm(lab, "-S", "-n", host=holder)
    rules = director.restore_rules(t, svc.director)
    out: list[RealServerCheck] = []
    try:
        with arp.pinned(lab, hop, svc.vip, lab.mac(holder, t.lan_iface(holder)),
                        t.lan_iface(hop)):
            for r in svc.real_servers:
                if r.weight == 0:
                    out.append(RealServerCheck(r.host, RsStatus.NOT_VERIFIED,
                                               "weight 0 (drained): not measured"))
                    continue
                director.ipvsadm(lab, stdin=_only(rules, svc, t.primary_ip(r.host)),
                                 restore=True, host=holder)
                out.append(_one_pass(lab, svc, r.host, holder))
    finally:
        director.ipvsadm(lab, stdin=saved, restore=True, host=holder)
    return out


def _one_pass(lab: Lab, svc: VirtualService, rs: str, holder: str) -> RealServerCheck:
    t = lab.topology
    if svc.protocol != "tcp":
        try:
            rep = client.connect(lab, protocol="udp", timeout=1.5)
        except client.ConnectError as e:
            return RealServerCheck(rs, RsStatus.FAILED, str(e))
        if rep.server != rs:
            return RealServerCheck(rs, RsStatus.NOT_VERIFIED, f"served by {rep.server}")
        return RealServerCheck(rs, RsStatus.VERIFIED)
    if svc.family == 4:  # as labcheck does: each resolves its next hop afresh
        for h in t.real_servers:
            arp.flush_neighbours(lab, h.name)
    proof = path.prove(lab, connections=1, timeout=1.5, director_host=holder)
    if proof.failed:
        return RealServerCheck(rs, RsStatus.FAILED, "; ".join(proof.failed))
    [c] = proof.connections
    if c.server != rs:
        return RealServerCheck(rs, RsStatus.NOT_VERIFIED, f"served by {c.server}")
    if c.problems:
        return RealServerCheck(rs, RsStatus.FAILED, "; ".join(c.problems))
    return RealServerCheck(rs, RsStatus.VERIFIED)


def _rs_cause(t: Topology, svc: VirtualService, director_: str, name: str,
              head: str, detail: list[str]) -> Finding | None:
    """Why real server ``name`` cannot serve ``svc``, from what it is; None: nothing
    in its configuration says."""
    r = next(x for x in svc.real_servers if x.host == name)
    h = t.host(name)
    full = 32 if svc.family == 4 else 128
    if not _shares_segment(t, name, director_):
        return _finding(RS_NOT_ON_LINK, t, [name], svc, [
            head, f"{h.shown} shares no segment with the director {t.host(director_).shown}"])
    place = vip_place(t, h, svc.vip)
    if place is not None and place[0] == "lo" and place[1] != full:
        return _finding(WIDE_PREFIX_ON_LO, t, [name], svc, [
            head, f"{h.shown} holds {svc.vip}/{place[1]} on lo: every address of that "
            "prefix is local to it, the client's included"])
    if place is None:
        return _finding(MISSING_VIP, t, [name], svc, [
            head, f"{h.shown} holds no {svc.vip} (not on lo, a dummy or an interface): it "
            "drops what the director forwards"])
    if r.listen in ("rip", "none") and r.weight > 0:
        return _finding(HEALTHCHECK_RIP_ONLY, t, [name], svc, [
            head + (": " + "; ".join(detail[:2]) if detail else ""),
            f"{h.shown}'s service listens "
            + ("only on its own address, not on the VIP" if r.listen == "rip"
               else "on no address for this port") + " (listen.txt)"],
            symptom=None if r.listen == "rip" else
            "connections scheduled to a real server whose service is down are refused")
    return None


def explain_passes(t: Topology, svc: VirtualService, res: ServiceResult,
                   found: list[Finding] | None = None) -> list[Finding]:
    """The real servers that failed through the director (:func:`through_director`),
    each matched to what it is. One nothing about it explains goes with a finding
    of ``found`` (the service's others) that names the director, the fault every
    connection meets there; else it is ``unexplained``, naming it."""
    out: list[Finding] = []
    shown = t.host(res.director).shown
    at_director = next((f for f in found or [] if shown in f.hosts), None)
    for c in res.real_servers:
        if c.status is not RsStatus.FAILED:
            continue
        head = (f"through the director {t.host(res.director).shown} (the client's entry "
                f"for {svc.vip} pinned to it, {t.host(c.host).shown} the only real server "
                f"of the pass) the connection failed: {c.detail}")
        f = _rs_cause(t, svc, res.director, c.host, head, [c.detail])
        if f is None and at_director is not None:
            at_director.evidence.append(head)
            continue
        out.append(f or Finding(None, [t.host(c.host).shown], svc.key,
                                "a measured symptom no catalogue scenario explains",
                                [head], "read the evidence and the path ladder"))
    return out


def explain(t: Topology, svc: VirtualService, res: ServiceResult) -> list[Finding]:
    """The measured symptoms of one service, matched to catalogue scenarios."""
    out: list[Finding] = []
    explained: set[Symptom] = set()
    director = res.director
    rss = {r.host: r for r in svc.real_servers}
    # who answers who-has VIP besides the director
    arp_finding: dict[str, Finding] = {}
    for name in res.census:
        if name == director:
            continue
        h = t.host(name)
        # a host holding the VIP without serving it answers as a stale holder
        why = answers_arp(t, svc, h) if name in rss else STALE_VIP
        dev = _lan(t, name)
        place = vip_place(t, h, svc.vip)
        f = _finding(why, t, [name], svc, [
            f"{h.shown} answered who-has {svc.vip} in the census from the client's first hop",
            f"{h.shown} holds the VIP on "
            + (f"{place[0]} /{place[1]} scope {place[2]}" if place else "no interface")
            + f"; arp_ignore all={conf(h, 'all', 'arp_ignore')} {dev}={conf(h, dev, 'arp_ignore')}"
            f" lo={conf(h, 'lo', 'arp_ignore')}"]
            + ([] if name in rss else [f"{h.shown} is no real server of {svc.key}"]))
        out.append(f)
        arp_finding[name] = f
        explained.add(arp_symptom(name, svc.vip))
    if director not in res.census:
        explained.add(Symptom(SymptomKind.DIRECTOR_SILENT, svc.vip, host=director))
    # the first hop's VIP entry moved away from the director
    entry = res.vip_entry
    if entry not in (None, director) and entry in arp_finding:
        # it answered who-has VIP: that is how the entry moved, and where the
        # connections went (bypassing the director) since
        h = t.host(entry)
        dev = _lan(t, entry)
        arp_finding[entry].evidence.append(
            f"after the connections the client's neighbour entry for {svc.vip} points to "
            f"{h.shown}: the connections went to it, not through the director"
            + (f" (its arp_announce is {effective(h, dev, 'arp_announce')} as well: fix both)"
               if effective(h, dev, "arp_announce") < 2 else ""))
        explained |= set(res.symptoms)
    elif entry not in (None, director) and entry in rss:
        h = t.host(entry)
        dev = _lan(t, h.name)
        # announce written on lo only: the same mistake as an ARP answer on lo only
        lo_only = conf(h, "lo", "arp_announce") >= 1 and effective(h, dev, "arp_announce") == 0
        out.append(_finding(SYSCTLS_ON_LO_ONLY if lo_only else ANNOUNCE_POISONING,
                            t, [h.name], svc, [
            f"after the connections the client's neighbour entry for {svc.vip} points to "
            f"{h.shown}, not the director",
            f"{h.shown}: arp_announce all={conf(h, 'all', 'arp_announce')} "
            f"{dev}={conf(h, dev, 'arp_announce')} lo={conf(h, 'lo', 'arp_announce')}"]))
        # bypassing the director, later connections break the path proof: that is it
        explained |= set(res.symptoms)
    # failed connections: who could not have served them
    failures = [s for s in res.symptoms
                if s not in explained and s.kind is not SymptomKind.ANSWERS_ARP]

    if failures:
        causes = 0
        if _vip_primary(t, director, svc.vip):
            causes += 1
            out.append(_finding(DIRECTOR_VIP_PRIMARY, t, [director], svc, [
                f"{len(res.failed)} of {res.connections} connections failed",
                f"{t.host(director).shown} has the VIP {svc.vip} first on its LAN interface, "
                "with a prefix covering its own address: the VIP is its primary address"]))
        for name in rss:
            cause = _rs_cause(t, svc, director, name,
                              f"{len(res.failed)} of {res.connections} connections failed",
                              res.failed)
            if cause is not None:
                causes += 1
                out.append(cause)
        strict = [d for d, text in t.keepalived.items() if _strict_without_accept(text)]
        if causes == 0 and strict:
            causes += 1
            out.append(_finding(VRRP_STRICT, t, strict, svc, [
                f"{len(res.failed)} of {res.connections} connections failed",
                f"keepalived.conf of {', '.join(t.host(d).shown for d in strict)}: vrrp_strict "
                "without accept: keepalived drops what is sent to the VIP"]))
        if causes == 0 and arp_finding:
            # nothing else explains them, but several hosts answer for the VIP: the
            # client's entry flips between them, and a connection's later packets
            # reach a host that has no state for it
            causes += 1
            for f in arp_finding.values():
                f.evidence.append(
                    f"{len(res.failed)} of {res.connections} connections failed "
                    f"({'; '.join(res.failed[:2])}) while {len(res.census)} hosts answered "
                    "for the VIP: later packets of a connection can reach one that has no "
                    "state for it")
        if causes == 0:
            out.append(Finding(None, [t.host(director).shown], svc.key,
                               "a measured symptom no catalogue scenario explains",
                               [s.text() for s in failures] or res.failed,
                               "read the evidence and the path ladder"))
        explained |= set(failures)
    return out + explain_passes(t, svc, res, out)


def _stale_vips(lab: Lab, t: Topology, progress: Callable[[str], None]) -> list[Finding]:
    """Hosts that hold a service's VIP without being its real server (or director)
    connect to it: their own lo answers (refused, or a local listener)."""
    out = []
    places: dict[str, dict[str, tuple[str, int, str]]] = {}
    for svc in t.services:
        members = {r.host for r in svc.real_servers}
        for h in t.hosts:
            if h.name in members or h.role in ("client", "director"):
                continue
            if h.name not in places:
                places[h.name] = vip_places(h)
            place = places[h.name].get(svc.vip)
            if place is None or place[0] == "lan":
                continue
            progress(f"diagnose: {h.shown} holds {svc.vip} on {place[0]}: connecting from it")
            try:
                with lab.focus(svc):
                    rep = client.connect(lab, h.name, timeout=1.5)
                what = f"served locally by {rep.server}" if rep.server == h.name else None
            except client.ConnectError as e:
                what = str(e)
            if what is None:
                continue
            out.append(_finding(STALE_VIP, t, [h.name], svc, [
                f"{h.shown} holds {svc.vip} on {place[0]} but is not a real server of {svc.key}",
                f"connecting from {h.shown} to {svc.vip}:{svc.port}: {what}"]))
    return out


def predictions(t: Topology, measured: list[ServiceResult] | None = None) -> list[Finding]:
    """What the configuration alone says (no stimulus in the twin): labelled as such.

    A real server that holds no VIP of its service (the import says so) is predicted
    to drop what the director sends it, unless ``measured`` (the services the twin
    measured) reached it through the director: then the measurement says."""
    out: list[Finding] = []
    done = {(m.service, c.host): c.status for m in measured or [] for c in m.real_servers}
    places = {h.name: vip_places(h) for h in t.hosts}
    for svc in t.services:
        for r in svc.real_servers:
            h = t.host(r.host)
            status = done.get((svc.key, r.host), RsStatus.NOT_VERIFIED)
            if svc.vip not in places[r.host] and status is RsStatus.NOT_VERIFIED:
                out.append(_finding(MISSING_VIP, t, [h.name], svc, [
                    f"{h.shown} is a real server of {svc.key} (its address is in the IPVS "
                    f"table) but holds no {svc.vip}: it drops what the director forwards "
                    "(no connection reached it in the twin)"], measured=False))
            if len(h.interfaces) > 1 and any(effective(h, i.name, "rp_filter") == 1
                                             for i in h.interfaces):
                out.append(_finding(RP_FILTER_MULTIHOMED, t, [h.name], svc, [
                    f"{h.shown} has {len(h.interfaces)} interfaces with strict rp_filter=1: "
                    "requests from clients it routes back through another interface are "
                    "dropped (the twin's client is on the LAN, which does not show it)"],
                    measured=False))
            if (gw := _gateway_is_director(t, svc, h)) is not None:
                out.append(_finding(GATEWAY_IS_DIRECTOR, t, [h.name], svc, [
                    f"{h.shown}'s default route goes via {gw}, an address of the director "
                    f"{t.host(svc.director).shown}, which holds the VIP {svc.vip}: replies "
                    "from the VIP to clients beyond the LAN arrive there with a local source "
                    "and are dropped as martians (the twin's client is on the LAN, so its "
                    "replies do not take that route)"], measured=False))
    for d in sorted({svc.director for svc in t.services}):
        h = t.host(d)
        vs = {k: h.sysctls.get(f"net.ipv4.vs.{k}", v)
              for k, v in (("conntrack", "0"), ("conn_reuse_mode", "1"))}
        if vs["conntrack"] == "1" and vs["conn_reuse_mode"] == "1":
            svc = next(s for s in t.services if s.director == d)
            out.append(_finding(CONN_REUSE_STALL, t, [d], svc, [
                f"{h.shown}: net.ipv4.vs.conntrack=1 with conn_reuse_mode=1: a client "
                "reconnecting from a port whose connection just ended has its first SYN "
                "dropped and waits about 1 s (measured on 6.1 and 6.12 by `drlab scenario "
                "run conn-reuse-stall`; the twin's diagnosis does not reuse ports)"],
                measured=False))
    return out


def _gateway_is_director(t: Topology, svc: VirtualService, h: Host) -> str | None:
    """The director's address ``h``'s default route goes via (None when it does not),
    unless the director accepts local sources there: accept_local=1, and rp_filter
    not strict or the VIP on that same interface (strict reverse-path lookup of a
    local source passes only on the interface holding it; measured with `drlab
    validate --scenario rs-gateway-is-director`)."""
    d = t.host(svc.director)
    mine = {a.ip for i in d.interfaces for a in i.addresses}
    family = svc.family
    for r in h.routes:
        if r.dst in ("default", "0.0.0.0/0", "::/0") and r.via in mine \
                and ("." in r.via) == (family == 4):
            dev = next((i.name for i in d.interfaces
                        for a in i.addresses if a.ip == r.via), "all")
            vip_here = any(a.ip == svc.vip for i in d.interfaces if i.name == dev
                           for a in i.addresses)
            if family == 4 and effective(d, dev, "accept_local") == 1 \
                    and (effective(d, dev, "rp_filter") != 1 or vip_here):
                return None
            return r.via
    return None


def unique(findings: list[Finding]) -> list[Finding]:
    """One finding per fault, with the evidence of all: per scenario, hosts and
    service; a host-wide one (:data:`HOST_WIDE`) once per scenario and hosts, naming
    every service it shows in. A measured finding stands for the same prediction."""
    seen: dict[tuple[str, tuple[str, ...], str], Finding] = {}
    for f in findings:
        key = f.key
        first = seen.get(key)
        if first is None or (f.measured and not first.measured):
            seen[key] = f
            if first is not None:
                f.services += [s for s in first.services if s not in f.services]
            continue
        if first.measured and not f.measured:
            continue
        first.evidence += [e for e in f.evidence if e not in first.evidence]
        first.services += [s for s in f.services if s not in first.services]
    out = list(seen.values())
    for f in out:
        f.service = ", ".join(f.services)
    return out


def _strict_without_accept(text: str) -> bool:
    try:
        cfg = parse_keepalived(text)
    except LabError:
        return False
    return cfg.vrrp_strict and "accept" not in text.split()


def select(topology: Topology, services: list[str] | None) -> list[VirtualService]:
    """The services ``--service VIP:PORT`` (or a key, ``VIP:PORT/udp``) names; all by
    default. A name that matches none is a usage error naming what there is."""
    if not topology.services:
        raise UsageError(f"{topology.name}: no service to diagnose")
    chosen = []
    for name in services or []:
        hit = [s for s in topology.services
               if name in (s.key, f"{s.vip}:{s.port}", f"[{s.vip}]:{s.port}")]
        if not hit:
            raise UsageError(f"--service {name}: {topology.name} has "
                             + ", ".join(s.key for s in topology.services))
        chosen += [s for s in hit if s not in chosen]
    return chosen or list(topology.services)


#: A diagnosis of more services than this measures a sample of them (lab.model.sample),
#: unless --service names them; the rest are predicted, not measured.
SAMPLE_OVER = 50


def services_to_measure(topology: Topology,
                        services: list[str] | None) -> Sample[VirtualService]:
    """The services the twin measures: those ``services`` names (:func:`select`); by
    default all of them, or over :data:`SAMPLE_OVER` services a sample (the first, the
    last and 10 at random, seeded). The one place that chooses; a service not measured
    still has its predictions (:func:`predictions`)."""
    chosen = select(topology, services)
    if services or len(chosen) <= SAMPLE_OVER:
        return Sample(chosen, len(chosen), 0, DEFAULT_SEED)
    return sample(chosen)


def diagnose(topology: Topology, *, connections: int | None = None,
             services: list[str] | None = None, progress: Progress | None = None,
             lab_name: str | None = None) -> Diagnosis:
    """Build the twin of ``topology``, measure every service (or those ``services``
    names by key or ``VIP:PORT``; without them, over :data:`SAMPLE_OVER` services, a
    sample: the first, the last and 10 at random, said in the notes) and return the
    findings. The twin is torn down."""
    progress = progress or Progress()
    picked = services_to_measure(topology, services)
    chosen = picked.chosen
    diag = Diagnosis(topology.name, platform.release(), copy.deepcopy(topology))
    if not picked.all:   # too many to measure each in time
        diag.notes.append(picked.said())
    progress(f"diagnose: building the twin of {topology.name} ({len(topology.hosts)} hosts, "
             f"{len(topology.services)} services) ...")
    progress.start(f"diagnose {topology.name}", 1 + len(chosen))
    try:
        lab = up(topology, name=lab_name)
    except BaseException:
        progress.finish()
        raise
    progress.step("the twin is up")
    try:
        if topology.keepalived:
            progress("diagnose: waiting for VRRP to place the VIP ...")
            vrrp.wait_holder(lab)
        for svc in chosen:
            with lab.focus(svc):
                n = connections or max(4, 2 * len(svc.real_servers))
                res = _measure(lab, svc, n, progress)
                res.real_servers = through_director(lab, svc, res.director, progress)
                diag.services.append(res)
                diag.findings += explain(lab.topology, svc, res)
                progress.step(svc.key)
        diag.findings += _stale_vips(lab, topology, progress)
    finally:
        progress.finish()
        lab.teardown()
    diag.findings = unique(diag.findings + predictions(topology, diag.services))
    folded = [h for h in topology.hosts if h.represents]
    for h in folded:
        diag.notes.append(f"{h.shown} stands for {len(h.represents)} identical real "
                          f"server(s): {', '.join(h.represents[:5])}"
                          + (" ..." if len(h.represents) > 5 else ""))
    return diag

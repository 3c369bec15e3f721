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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.builder import Lab
from lab.builder.sysctl import PINNED_CONF
from lab.errors import LabError, UsageError
from lab.model import Host, Topology, VirtualService, topology_to_dict
from lab.model.keepalived import parse as parse_keepalived
from lab.model.sample import sample
from lab.probes import arp, labcheck, ndp, path, vrrp
from lab.probes.labcheck import Symptom, SymptomKind, connection_failed
from lab.probes.labcheck import answers_arp as arp_symptom
from lab.roles import client, up
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


@dataclass
class Finding:
    #: The catalogue's scenario that explains it; None: none does (``unexplained``).
    scenario: Scenario | None
    hosts: list[str]
    service: str
    symptom: str
    evidence: list[str]
    fix: str
    #: False: only the configuration says so (a prediction), the twin did not show it.
    measured: bool = True

    @property
    def name(self) -> str:
        return self.scenario.name if self.scenario else UNEXPLAINED

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "hosts": self.hosts, "service": self.service,
                "symptom": self.symptom, "evidence": self.evidence, "fix": self.fix,
                "measured": self.measured}


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

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "symptoms": [s.text() for s in self.symptoms]}


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
                                                sorted(s.distribution.items())) or "-"))
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
        res = ServiceResult(svc.key, r.director, sorted(r.census.hosts), connections,
                            list(r.proof.failed), dict(r.distribution), r.vip_entry,
                            r.symptoms, r.proof.ladder())
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

    full = 32 if svc.family == 4 else 128
    if failures:
        causes = 0
        if _vip_primary(t, director, svc.vip):
            causes += 1
            out.append(_finding(DIRECTOR_VIP_PRIMARY, t, [director], svc, [
                f"{len(res.failed)} of {res.connections} connections failed",
                f"{t.host(director).shown} has the VIP {svc.vip} first on its LAN interface, "
                "with a prefix covering its own address: the VIP is its primary address"]))
        for name, r in rss.items():
            h = t.host(name)
            if not _shares_segment(t, name, director):
                causes += 1
                out.append(_finding(RS_NOT_ON_LINK, t, [name], svc, [
                    f"{len(res.failed)} of {res.connections} connections failed",
                    f"{h.shown} shares no segment with the director {t.host(director).shown}"]))
            elif (place := vip_place(t, h, svc.vip)) is not None and place[0] == "lo" \
                    and place[1] != full:
                causes += 1
                out.append(_finding(WIDE_PREFIX_ON_LO, t, [name], svc, [
                    f"{len(res.failed)} of {res.connections} connections failed",
                    f"{h.shown} holds {svc.vip}/{place[1]} on lo: every address of that "
                    "prefix is local to it, the client's included"]))
            elif place is None:
                causes += 1
                out.append(_finding(MISSING_VIP, t, [name], svc, [
                    f"{len(res.failed)} of {res.connections} connections failed",
                    f"{h.shown} holds no {svc.vip} (not on lo, a dummy or an interface): it "
                    "drops what the director forwards"]))
            elif r.listen in ("rip", "none") and r.weight > 0:
                causes += 1
                out.append(_finding(HEALTHCHECK_RIP_ONLY, t, [name], svc, [
                    f"{len(res.failed)} of {res.connections} connections failed: "
                    + "; ".join(res.failed[:2]),
                    f"{h.shown}'s service listens "
                    + ("only on its own address, not on the VIP" if r.listen == "rip"
                       else "on no address for this port") + " (listen.txt)"],
                    symptom=None if r.listen == "rip" else
                    "connections scheduled to a real server whose service is down are refused"))
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
    return out


def _stale_vips(lab: Lab, t: Topology, progress: Callable[[str], None]) -> list[Finding]:
    """Hosts that hold a service's VIP without being its real server (or director)
    connect to it: their own lo answers (refused, or a local listener)."""
    out = []
    for svc in t.services:
        members = {r.host for r in svc.real_servers}
        for h in t.hosts:
            if h.name in members or h.role in ("client", "director"):
                continue
            place = vip_place(t, h, svc.vip)
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


def predictions(t: Topology) -> list[Finding]:
    """What the configuration alone says (no stimulus in the twin): labelled as such."""
    out: list[Finding] = []
    for svc in t.services:
        for r in svc.real_servers:
            h = t.host(r.host)
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
    """One finding per scenario, hosts and service, with the evidence of all."""
    seen: dict[tuple[str, tuple[str, ...], str], Finding] = {}
    for f in findings:
        first = seen.setdefault((f.name, tuple(f.hosts), f.service), f)
        if first is not f:
            first.evidence += [e for e in f.evidence if e not in first.evidence]
    return list(seen.values())


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


def diagnose(topology: Topology, *, connections: int | None = None,
             services: list[str] | None = None, progress: Progress | None = None,
             lab_name: str | None = None) -> Diagnosis:
    """Build the twin of ``topology``, measure every service (or those ``services``
    names by key or ``VIP:PORT``; without them, over :data:`SAMPLE_OVER` services, a
    sample: the first, the last and 10 at random, said in the notes) and return the
    findings. The twin is torn down."""
    progress = progress or Progress()
    chosen = select(topology, services)
    diag = Diagnosis(topology.name, platform.release(), copy.deepcopy(topology))
    if not services and len(chosen) > SAMPLE_OVER:   # too many to measure each in time
        picked = sample(chosen)
        chosen = picked.chosen
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
                diag.services.append(res)
                diag.findings += explain(lab.topology, svc, res)
                progress.step(svc.key)
        diag.findings += _stale_vips(lab, topology, progress)
    finally:
        progress.finish()
        lab.teardown()
    diag.findings = unique(diag.findings + predictions(topology))
    folded = [h for h in topology.hosts if h.represents]
    for h in folded:
        diag.notes.append(f"{h.shown} stands for {len(h.represents)} identical real "
                          f"server(s): {', '.join(h.represents[:5])}"
                          + (" ..." if len(h.represents) > 5 else ""))
    return diag

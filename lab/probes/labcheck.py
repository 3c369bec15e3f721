"""Is a running DR lab healthy? The checks ``drlab check`` runs, as data.

:func:`check` measures, on a lab whose director has its IPVS service:

* the ARP (or NDP) census of the VIP from the client's first hop (only the director
  may answer);
* a few connections through the VIP with the DR path proof of each one, the
  real servers' neighbour tables flushed first (the census's barriers taught
  them the client's MAC; flushed, each resolves its next hop again as it does
  when an entry expires, and says in its ARP request which address to answer);
* after them, the first hop's neighbour entry for the VIP (a real server that
  announces "tell VIP" moves it to itself);
* how the connections spread over the real servers.

Every problem becomes one :class:`Symptom` in :attr:`CheckResult.symptoms`: its
:class:`SymptomKind` and the hosts, VIP and detail as fields (``.text()`` says it
for people: ``rs1 answers who-has 192.0.2.100``); the lab is healthy when there is
none. Nothing here is predicted: every symptom comes from packets, the kernel's
neighbour table or IPVS counters.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from lab.builder import Lab
from lab.model.sample import sample
from lab.probes import arp, ndp, path
from lab.probes.census import Census


class SymptomKind(Enum):
    """What kind of problem a measurement showed (its value names it in JSON)."""

    #: A host other than the director answered who-has VIP (``host``).
    ANSWERS_ARP = "answers-arp"
    #: The director (``host``) did not answer who-has VIP.
    DIRECTOR_SILENT = "director-silent"
    #: Not exactly one director holds the VIP (``hosts``: those that do).
    HOLDERS = "holders"
    #: A connection through the VIP did not complete (``detail``: the client's error).
    CONNECTION_FAILED = "connection-failed"
    #: The DR path proof found a hop doing the wrong thing (``detail``: what, from
    #: :attr:`lab.probes.path.PathProof.problems`).
    PATH = "path"
    #: The first hop's (``hop``) neighbour entry for the VIP points to ``host``, not
    #: the director.
    ENTRY_MOVED = "entry-moved"


@dataclass(frozen=True)
class Symptom:
    """One measured problem, as data; :meth:`text` for people."""

    kind: SymptomKind
    vip: str
    host: str | None = None
    hosts: tuple[str, ...] = ()
    hop: str | None = None
    detail: str = ""

    def text(self) -> str:
        k = self.kind
        if k is SymptomKind.ANSWERS_ARP:
            return f"{self.host} answers who-has {self.vip}"
        if k is SymptomKind.DIRECTOR_SILENT:
            return f"the director {self.host} does not answer who-has {self.vip}"
        if k is SymptomKind.HOLDERS:
            return (f"{len(self.hosts)} directors hold {self.vip}"
                    + (f": {', '.join(self.hosts)}" if self.hosts else ""))
        if k is SymptomKind.CONNECTION_FAILED:
            return f"connection to the VIP failed: {self.detail}"
        if k is SymptomKind.ENTRY_MOVED:
            return (f"{self.hop}'s neighbour entry for {self.vip} points to "
                    f"{self.host}, not the director: connections bypass it")
        return self.detail

    __str__ = text


def answers_arp(host: str, vip: str) -> Symptom:
    return Symptom(SymptomKind.ANSWERS_ARP, vip, host=host)


def connection_failed(vip: str, error: str) -> Symptom:
    return Symptom(SymptomKind.CONNECTION_FAILED, vip, detail=error)


def proof_symptoms(proof: path.PathProof, vip: str) -> list[Symptom]:
    """A path proof's problems as symptoms: its failed connections, then what the
    hops did wrong (:attr:`~lab.probes.path.PathProof.problems` lists the failed
    connections first)."""
    return ([connection_failed(vip, e) for e in proof.failed]
            + [Symptom(SymptomKind.PATH, vip, detail=p)
               for p in proof.problems[len(proof.failed):]])


@dataclass(frozen=True)
class SampledService:
    """One service of a sampled check (``drlab check --sample K``): its key and the
    path proof of one connection through it."""

    key: str
    vip: str
    why: str  # "first", "last" or "random"
    proof: path.PathProof

    @property
    def ok(self) -> bool:
        return not self.proof.problems

    def line(self) -> str:
        who = ", ".join(sorted({c.server for c in self.proof.connections})) or "nobody"
        state = "ok" if self.ok else "FAILED: " + "; ".join(self.proof.problems)
        return f"  {self.key:<24} ({self.why}) answered by {who}: {state}"


def pick(n: int, k: int, seed: int) -> list[tuple[int, str]]:
    """Which of ``n`` services a sampled check proves: the first, the last and ``k``
    others drawn at random (``seed``; :func:`lab.model.sample.sample` draws them, as it
    does for diagnose), as ``(index, why)`` in index order."""
    return [(i, "first" if i == 0 else "last" if i == n - 1 else "random")
            for i in sample(range(n), k, seed).chosen]


@dataclass
class CheckResult:
    lab: str
    director: str
    vip: str
    census: Census
    proof: path.PathProof
    #: The first hop's neighbour entry for the VIP after the connections.
    vip_entry: str | None
    hop: str
    distribution: dict[str, int] = field(default_factory=dict)
    #: With keepalived: the directors whose interface holds the VIP (one, when healthy).
    holders: list[str] | None = None
    #: A sampled check (``sample`` given, or a lab of many services): the services
    #: proven one connection each, of :attr:`services` in all.
    sampled: list[SampledService] = field(default_factory=list)
    services: int = 1
    seed: int | None = None

    @property
    def symptoms(self) -> list[Symptom]:
        vip = self.vip
        out = [answers_arp(h, vip) for h in sorted(self.census.hosts - {self.director})]
        if self.director not in self.census.hosts:
            out.append(Symptom(SymptomKind.DIRECTOR_SILENT, vip, host=self.director))
        if self.holders is not None and len(self.holders) != 1:
            out.append(Symptom(SymptomKind.HOLDERS, vip, hosts=tuple(self.holders)))
        out += proof_symptoms(self.proof, vip)
        if self.vip_entry not in (None, self.director):
            out.append(Symptom(SymptomKind.ENTRY_MOVED, vip, host=self.vip_entry,
                               hop=self.hop))
        for s in self.sampled:
            out += proof_symptoms(s.proof, s.vip)
        return out

    def sample_text(self) -> list[str]:
        """What a sampled check proved, said as such."""
        if self.seed is None:
            return []
        drawn = sum(s.why == "random" for s in self.sampled)
        return [f"sampled: {len(self.sampled)} of {self.services:,} services proven, one "
                f"connection each (the first, the last and {drawn} at random, seed "
                f"{self.seed}); the other {self.services - len(self.sampled):,} were not "
                "checked",
                *(s.line() for s in self.sampled)]

    @property
    def ok(self) -> bool:
        return not self.symptoms

    def text(self) -> str:
        lines = [f"census: {self.census}", self.proof.ladder(),
                 f"{self.hop}'s neighbour entry for {self.vip}: {self.vip_entry or 'none'}",
                 "distribution: " + (", ".join(f"{k} {v}" for k, v in
                                               sorted(self.distribution.items())) or "none")]
        lines += self.sample_text()
        lines += ["OK"] if self.ok else [f"FAILED: {s.text()}" for s in self.symptoms]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "ok": self.ok, "symptoms": [s.text() for s in self.symptoms],
                "census": sorted(self.census.hosts), "vip_entry": self.vip_entry,
                "distribution": self.distribution, "problems": self.proof.problems,
                "ladder": self.proof.ladder(),
                "sample": None if self.seed is None else {
                    "seed": self.seed, "services": self.services,
                    "proven": [{"service": s.key, "why": s.why, "ok": s.ok,
                                "servers": sorted({c.server for c in s.proof.connections}),
                                "problems": s.proof.problems} for s in self.sampled]}}


def check(lab: Lab, connections: int = 4, timeout: float = 1.5, sample: int | None = None,
          seed: int | None = None) -> CheckResult:
    """Census, ``connections`` proven connections and the VIP's neighbour entry.

    A connection that does not complete within ``timeout`` seconds (scaled by
    ``DRLAB_TIMEOUT_SCALE``) counts as failed. ``sample``: also prove one connection
    through each of ``sample`` services drawn at random (``seed``, random if None)
    plus the first and the last (:func:`pick`)."""
    t = lab.topology
    if t.service is None:
        raise ValueError(f"lab {lab.id} has no virtual service to check")
    holder, now = t.director.name, None
    if t.keepalived:  # the director holding the VIP now, as the kernel shows it
        # lazy: only keepalived labs need it (+3 modules, ~5 ms)
        from lab.probes import vrrp

        now = vrrp.holders(lab)
        holder = now[0] if len(now) == 1 else holder
    hop = path.first_hop(lab)
    if t.service.family == 6:
        census = ndp.ndp_census(lab, asker=hop)
    else:
        census = arp.census(lab, asker=hop, iface=t.lan_iface(hop))
    if t.service.family == 4:
        for rs in t.real_servers:
            arp.flush_neighbours(lab, rs.name)
    proof = path.prove(lab, connections=connections, timeout=timeout, director_host=holder)
    dist = Counter(c.server for c in proof.connections)
    entry = arp.resolves_to(lab, hop, t.service.vip)
    sampled: list[SampledService] = []
    if sample is not None:
        seed = random.SystemRandom().randrange(1 << 31) if seed is None else seed
        for i, why in pick(len(t.services), sample, seed):
            svc = t.services[i]
            with lab.focus(svc):
                sampled.append(SampledService(svc.key, svc.vip, why, path.prove(
                    lab, connections=1, timeout=timeout, director_host=holder)))
    return CheckResult(lab.id, holder, t.service.vip, census, proof, entry, hop, dict(dist),
                       now, sampled, len(t.services), seed if sample is not None else None)

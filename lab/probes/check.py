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

Every problem becomes one line in :attr:`CheckResult.symptoms`, naming the
hosts (``rs1 answers who-has 192.0.2.100``); the lab is healthy when there is
none. Nothing here is predicted: every line comes from packets, the kernel's
neighbour table or IPVS counters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from lab.builder import Lab
from lab.probes import arp, ndp, path
from lab.probes.census import Census


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

    @property
    def symptoms(self) -> list[str]:
        out = [f"{h} answers who-has {self.vip}"
               for h in sorted(self.census.hosts - {self.director})]
        if self.director not in self.census.hosts:
            out.append(f"the director {self.director} does not answer who-has {self.vip}")
        if self.holders is not None and len(self.holders) != 1:
            out.append(f"{len(self.holders)} directors hold {self.vip}"
                       + (f": {', '.join(self.holders)}" if self.holders else ""))
        out += self.proof.problems
        if self.vip_entry not in (None, self.director):
            out.append(f"{self.hop}'s neighbour entry for {self.vip} points to "
                       f"{self.vip_entry}, not the director: connections bypass it")
        return out

    @property
    def ok(self) -> bool:
        return not self.symptoms

    def text(self) -> str:
        lines = [f"census: {self.census}", self.proof.ladder(),
                 f"{self.hop}'s neighbour entry for {self.vip}: {self.vip_entry or 'none'}",
                 "distribution: " + (", ".join(f"{k} {v}" for k, v in
                                               sorted(self.distribution.items())) or "none")]
        lines += ["OK"] if self.ok else [f"FAILED: {s}" for s in self.symptoms]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"lab": self.lab, "ok": self.ok, "symptoms": self.symptoms,
                "census": sorted(self.census.hosts), "vip_entry": self.vip_entry,
                "distribution": self.distribution, "problems": self.proof.problems,
                "ladder": self.proof.ladder()}


def check(lab: Lab, connections: int = 4, timeout: float = 1.5) -> CheckResult:
    """Census, ``connections`` proven connections and the VIP's neighbour entry.

    A connection that does not complete within ``timeout`` seconds (scaled by
    ``DRLAB_TIMEOUT_SCALE``) counts as failed."""
    t = lab.topology
    if t.service is None:
        raise ValueError(f"lab {lab.id} has no virtual service to check")
    holder, now = t.director.name, None
    if t.keepalived:  # the director holding the VIP now, as the kernel shows it
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
    return CheckResult(lab.id, holder, t.service.vip, census, proof,
                       arp.resolves_to(lab, hop, t.service.vip), hop, dict(dist), now)

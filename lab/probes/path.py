"""DR path proof: what each hop did to one connection, from captured frames.

For every connection the proof checks, on the wire:

1. the request reaches the director addressed to the director's MAC and the VIP;
2. on the real server's interface the request has destination MAC = the real
   server's and destination IP = the VIP: the director rewrote only the MAC;
3. the reply leaves the real server with source IP = the VIP, addressed to the
   MAC of the client (or of the router when the client is behind one);
4. the director's interface sees no reply frame;
5. the service's OutPkts did not move.

:func:`prove` returns all of it as data, plus a compact text ladder.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from weakref import WeakKeyDictionary

from lab.builder import Lab
from lab.probes.capture import Capture
from lab.roles import client, director
from lab.wire.frames import Decoded, decode
from lab.wire.packet import Frame

#: The last proof run on each lab (its ladder goes into failure reports).
_LAST: WeakKeyDictionary[Lab, PathProof] = WeakKeyDictionary()


def last_proof(lab: Lab) -> PathProof | None:
    """The last DR path proof run on ``lab``, if any."""
    return _LAST.get(lab)


def first_hop(lab: Lab, client_host: str = "client") -> str:
    """The host whose frames carry the client's traffic on the director's segment."""
    t = lab.topology
    dsegs = {i.segment for i in t.director.interfaces}
    if {i.segment for i in t.host(client_host).interfaces} & dsegs:
        return client_host
    for h in t.hosts_by_role("router"):
        if {i.segment for i in h.interfaces} & dsegs:
            return h.name
    raise LookupError("no host links the client to the director's segment")


@dataclass
class ConnectionProof:
    server: str
    client_addr: tuple[str, int]
    vip: tuple[str, int]
    request_at_director: Decoded | None
    request_at_server: Decoded | None
    reply_from_server: Decoded | None
    replies_at_director: list[Decoded]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class PathProof:
    connections: list[ConnectionProof]
    outpkts_before: int
    outpkts_after: int
    captures: dict[str, Capture]
    macs: dict[str, str]  # host -> MAC on the LAN
    #: Connections that never completed (the client's error for each).
    failed: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = [f"connection to the VIP failed: {e}" for e in self.failed]
        out += [f"{c.server} {c.client_addr[0]}:{c.client_addr[1]}: {p}"
                for c in self.connections for p in c.problems]
        if self.outpkts_after != self.outpkts_before:
            out.append(f"IPVS OutPkts moved {self.outpkts_before} -> {self.outpkts_after}: "
                       "replies went through the director")
        return out

    @property
    def ok(self) -> bool:
        return not self.problems

    def ladder(self) -> str:
        """A compact text ladder per connection: client -> director -> real server -> client."""
        who = {m: h for h, m in self.macs.items()}

        def mac(m: str) -> str:
            return f"{who.get(m, '?')}[{m}]"

        lines = []
        for c in self.connections:
            lines.append(f"connection {c.client_addr[0]}:{c.client_addr[1]} -> "
                         f"{c.vip[0]}:{c.vip[1]} served by {c.server}"
                         f" {'ok' if c.ok else 'FAILED'}")
            for label, f in (("1 request at director", c.request_at_director),
                             ("2 request at server  ", c.request_at_server),
                             ("3 reply from server  ", c.reply_from_server)):
                if f is None:
                    lines.append(f"  {label}  (not seen)")
                else:
                    lines.append(f"  {label}  {mac(f.eth_src)} -> {mac(f.eth_dst)}  "
                                 f"{f.src}:{f.sport} -> {f.dst}:{f.dport} [{f.flags}]")
            lines.append(f"  4 replies at director {len(c.replies_at_director)}")
            lines += [f"  ! {p}" for p in c.problems]
        lines += [f"connection FAILED: {e}" for e in self.failed]
        lines.append(f"IPVS OutPkts {self.outpkts_before} -> {self.outpkts_after}")
        return "\n".join(lines)


def _frames(cap: Capture) -> list[tuple[Frame, Decoded]]:
    return [(f, decode(f.data)) for f in cap.frames]


def prove(lab: Lab, connections: int = 2, client_host: str = "client",
          timeout: float = 3.0, director_host: str | None = None) -> PathProof:
    """Open ``connections`` connections to the VIP while capturing; prove each one's path.

    The connections are opened side by side (each from its own thread and socket,
    each with its own deadline), so a lab where they hang costs one ``timeout``.
    A connection that does not complete within ``timeout`` (scaled) is listed in
    :attr:`PathProof.failed` (a problem), not raised. ``director_host`` is the
    director holding the VIP now (keepalived labs: after a failover, the backup)."""
    t = lab.topology
    svc = t.service
    assert svc is not None, "path proof needs a virtual service"
    hop = first_hop(lab, client_host)
    d = director_host or t.director.name
    dif = lab.topology.lan_iface(d)
    # a real server off the director's segment cannot be reached by DR: its
    # connections fail (reported), there is nothing of it to capture on the LAN
    rs_names = [h.name for h in t.real_servers if any(
        i.segment in {j.segment for j in t.director.interfaces} for i in h.interfaces)]
    macs = {h: lab.mac(h, lab.topology.lan_iface(h)) for h in {hop, d, *rs_names}}
    before = director.read_service(lab, d).stats.outpkts
    caps = {d: Capture(lab, d, dif)}
    caps.update({rs: Capture(lab, rs, lab.topology.lan_iface(rs)) for rs in rs_names})
    for c in caps.values():
        c.start()
    replies: list[client.Reply] = []
    failed: list[str] = []

    def one(_: int) -> client.Reply | str:
        try:
            return client.connect(lab, client_host, timeout=timeout)
        except client.ConnectError as e:
            return str(e)

    try:  # side by side: a lab whose connections hang costs one timeout, not one each
        with ThreadPoolExecutor(max_workers=max(1, connections)) as pool:
            for r in pool.map(one, range(connections)):
                if isinstance(r, str):
                    failed.append(r)
                else:
                    replies.append(r)
    finally:
        for c in caps.values():
            c.stop()
    after = director.read_service(lab, d).stats.outpkts
    dframes = [x for _f, x in _frames(caps[d])]
    proofs = []
    for r in replies:
        cip, cport = r.server_saw_client
        rs = r.server
        rframes = [x for _f, x in _frames(caps[rs])] if rs in caps else []

        def is_req(x: Decoded, cip: str = cip, cport: int = cport) -> bool:
            return (x.is_ip and x.src == cip and x.sport == cport and x.dst == svc.vip
                    and x.dport == svc.port and "S" in x.flags and "A" not in x.flags)

        def is_reply(x: Decoded, cip: str = cip, cport: int = cport) -> bool:
            return (x.is_ip and x.dst == cip and x.dport == cport and x.sport == svc.port)

        req_d = next((x for x in dframes if is_req(x) and x.eth_dst == macs[d]), None)
        # the request as the director sent it to rs; else any copy (a bridge that has
        # not learnt the director's MAC yet floods the client's frame to every port)
        req_rs = next((x for x in rframes if is_req(x) and x.eth_dst == macs.get(rs)),
                      None) or next((x for x in rframes if is_req(x)), None)
        rep_rs = next((x for x in rframes if is_reply(x) and "S" in x.flags), None)
        rep_d = [x for x in dframes if is_reply(x)]
        p: list[str] = []
        if req_d is None:
            p.append(f"no request to the director's MAC {macs[d]} on {d}/{dif}")
        if req_rs is None:
            p.append(f"request never reached {rs}")
        else:
            if req_rs.eth_dst != macs.get(rs):
                p.append(f"request at {rs} addressed to MAC {req_rs.eth_dst}, not {rs}'s")
            if req_rs.eth_src != macs[d]:
                p.append(f"request at {rs} came from MAC {req_rs.eth_src}, not the director's")
            if req_rs.dst != svc.vip:
                p.append(f"request at {rs} has destination IP {req_rs.dst}, not the VIP")
        if rep_rs is None:
            p.append(f"no reply left {rs}")
        else:
            if rep_rs.src != svc.vip:
                p.append(f"reply from {rs} has source IP {rep_rs.src}, not the VIP")
            if rep_rs.eth_dst != macs[hop]:
                p.append(f"reply from {rs} sent to MAC {rep_rs.eth_dst}, not {hop}'s {macs[hop]}")
        if rep_d:
            p.append(f"{len(rep_d)} reply frames seen at the director")
        if r.peer != (svc.vip, svc.port):
            p.append(f"client's peer is {r.peer}, not the VIP")
        proofs.append(ConnectionProof(rs, (cip, cport), (svc.vip, svc.port), req_d, req_rs,
                                      rep_rs, rep_d, p))
    proof = PathProof(proofs, before, after, caps, macs, failed)
    _LAST[lab] = proof
    return proof

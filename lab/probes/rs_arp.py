"""Measure a real server's ARP and DR behaviour (the observed side of lab.model.predict).

Needs no IPVS: the director's DR hop is reproduced on the wire. The director
resolves the RIP with ARP (as IPVS would), then a SYN for the VIP is sent
from the director's interface to the real server's MAC with the client's
address as source: exactly the frame ``ip_vs_dr_xmit`` would send. So the
same measurement runs on the host kernel and in the VM.

Every outcome is decided by an event, not a fixed wait: the real server's
counters say whether it dropped the SYN (Ip.InAddrErrors, reverse-path
filter) or answered it (Tcp.OutSegs), and since a reply (or the ARP request
it needs) is transmitted synchronously before the counter is read, the
capture already holds it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

from lab.builder import Lab
from lab.probes.arp import census, flush_neighbours
from lab.probes.capture import Capture
from lab.probes.counters import counters
from lab.probes.state import neighbours
from lab.util import Timeout, close_soon, wait_for
from lab.wire.frames import decode, parse_arp, tcp_frame
from lab.wire.packet import packet_socket

NUD_REACHABLE = 0x02


class SynOutcome(Enum):
    """What the real server did with the director's DR SYN (the counter that moved)."""

    NOT_LOCAL = "dropped: VIP not local"  # Ip.InAddrErrors
    RP_FILTER = "dropped by rp_filter"  # TcpExt.IPReversePathFilter
    ANSWERED = "answered"  # Tcp.OutSegs
    NO_REACTION = "no reaction"


#: The counter that moves for each reaction, in the order they are checked.
_COUNTERS = (("Ip.InAddrErrors", SynOutcome.NOT_LOCAL),
             ("TcpExt.IPReversePathFilter", SynOutcome.RP_FILTER),
             ("Tcp.OutSegs", SynOutcome.ANSWERED))


@dataclass
class Observation:
    answers_arp: bool
    announce_sender: str | None  # "vip", "rip", another IP, or None (no request seen)
    dr_works: bool
    poisons: bool
    evidence: list[str] = field(default_factory=list)

    def as_prediction_fields(self) -> tuple[bool, str | None, bool, bool]:
        return (self.answers_arp, self.announce_sender, self.dr_works, self.poisons)


def syn_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int,
              dport: int) -> bytes:
    return tcp_frame(src_mac, dst_mac, src_ip, dst_ip, sport, dport, "S",
                     seq=random.getrandbits(32))


def measure(lab: Lab, rs: str = "rs1", client: str = "client", timeout: float = 3.0
            ) -> Observation:
    """Measure ``rs``: census from the client, then one DR request from the director."""
    t = lab.topology
    svc = t.service
    assert svc is not None
    vip, port = svc.vip, svc.port
    d = t.director.name
    rip, cip = t.primary_ip(rs), t.primary_ip(client)
    ev: list[str] = []

    c = census(lab, vip, asker=client)
    ev.append(str(c))
    answers = rs in c.hosts

    # the director must resolve the RIP, as IPVS does before sending
    rc = census(lab, rip, asker=d)
    ev.append(str(rc))
    if rs not in rc.hosts:
        ev.append(f"{d} cannot resolve {rs}'s address {rip}: IPVS could not send to it")
        return Observation(answers, None, False, False, ev)

    # a clean start: the real server must ARP for the client when it replies,
    # and the client's entry for the VIP points at the director
    flush_neighbours(lab, rs)
    cif = lab.ipr(client).link_lookup(ifname="eth0")[0]
    lab.ipr(client).neigh("replace", dst=vip, lladdr=lab.mac(d), ifindex=cif,
                          state=NUD_REACHABLE)

    before = counters(lab, rs)
    sport = random.randint(20000, 60000)
    with Capture(lab, rs) as rcap, Capture(lab, client) as ccap:
        inj = packet_socket(lab, d, "eth0")
        try:
            inj.send(syn_frame(lab.mac(d), lab.mac(rs), cip, vip, sport, port))
        finally:
            close_soon(inj)

        def outcome() -> SynOutcome | None:
            now = counters(lab, rs)
            for key, what in _COUNTERS:
                if now.get(key, 0) > before.get(key, 0):
                    return what
            return None

        try:
            result = (wait_for(outcome, timeout, f"{rs} to drop or answer the SYN")
                      or SynOutcome.NO_REACTION)  # never None: wait_for returns a true value
            said = result.value
        except Timeout as e:
            result, said = SynOutcome.NO_REACTION, f"{SynOutcome.NO_REACTION.value} ({e})"
        ev.append(f"{rs}: SYN {cip}:{sport} -> {vip}:{port} {said}")
        rcap.poll()
        requests = [a for f in rcap.frames if f.outgoing and (a := parse_arp(f.data))
                    and a.op == 1 and a.pdst == cip]
        if result is SynOutcome.ANSWERED and requests:
            # the reply waits for the client's ARP answer: let it arrive
            def synack() -> bool:
                ccap.poll()
                return any(_is_synack(f.data, vip, port, cip, sport) for f in ccap.frames)
            try:
                wait_for(synack, timeout, "the SYN-ACK after ARP resolution")
            except Timeout:
                pass
        ccap.poll()
        works = any(_is_synack(f.data, vip, port, cip, sport) and
                    decode(f.data).eth_dst == lab.mac(client) for f in ccap.frames)
    sender = None
    if requests:
        s = requests[0].psrc
        sender = "vip" if s == vip else "rip" if s == rip else s
        ev.append(f"{rs} asked who-has {cip} tell {s}")
    entry = neighbours(lab, client).get(vip)
    poisoned = entry is not None and entry == lab.mac(rs)
    ev.append(f"{client}'s neighbour entry for {vip}: {entry} "
              f"({lab.host_of_mac(entry) if entry else 'none'})")
    return Observation(answers, sender, works, poisoned, ev)


def _is_synack(frame: bytes, vip: str, port: int, cip: str, sport: int) -> bool:
    x = decode(frame)
    return (x.proto == 6 and x.src == vip and x.sport == port and x.dst == cip
            and x.dport == sport and x.flags == "SA")

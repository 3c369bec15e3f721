"""What keepalived did, measured: the VIP's holder, failover, failback, health checks.

Every verdict here comes from the kernel and the wire: which director's
interface holds the VIP (netlink), who answers ARP for it (the census), the
gratuitous ARP on the client's segment (a capture), the client's neighbour
entry, IPVS's table (netlink) and real connections. keepalived's own report
(:func:`lab.roles.keepalived.state`) is shown next to it, never used for a
verdict. Times are wall-clock from the fault the lab caused to what the lab
observed, polled (never slept) with the lab's usual deadlines.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Literal

from lab.builder import Lab
from lab.probes import arp
from lab.probes.capture import Capture
from lab.roles import client, director, keepalived, realserver
from lab.util import Timeout, scaled, wait_for
from lab.wire.frames import parse_arp

Fault = Literal["link", "stop", "crash"]


def directors(lab: Lab) -> list[str]:
    return [h.name for h in lab.topology.hosts_by_role("director")]


def holders(lab: Lab) -> list[str]:
    """Directors whose LAN interface holds the VIP now (read from the kernel)."""
    vip = lab.topology.main_service.vip
    out = []
    for d in directors(lab):
        ipr = lab.ipr(d)
        if any(a.get("address") == vip for a in ipr.get_addr(family=socket.AF_INET)):
            out.append(d)
    return out


def preempts(lab: Lab, director: str) -> bool:
    """Does keepalived on ``director`` take the VIP back from a lower priority when it
    returns (its configuration has no ``nopreempt``)?"""
    return "nopreempt" not in lab.topology.keepalived[director]


def wait_holder(lab: Lab, timeout: float = 20.0, not_: str | None = None) -> str:
    """Poll until exactly one director holds the VIP (and it is not ``not_``)."""
    def one() -> str | None:
        h = holders(lab)
        return h[0] if len(h) == 1 and h[0] != not_ else None
    return wait_for(one, timeout, "exactly one director to hold the VIP"
                    + (f" (not {not_})" if not_ else ""))


def rs_in_table(lab: Lab, host: str) -> dict[str, int]:
    """Real server name -> weight, as IPVS on ``host`` has them for the lab's service."""
    svc = lab.topology.service
    assert svc is not None
    ips = {lab.topology.primary_ip(h.name): h.name for h in lab.topology.real_servers}
    for s in director.read_services(lab, host):
        if (s.vip, s.port) == (svc.vip, svc.port) or (svc.fwmark and s.fwmark == svc.fwmark):
            return {ips.get(d.addr, d.addr): d.weight for d in s.dests}
    return {}


@dataclass
class Holding:
    """Who holds the VIP, measured, next to keepalived's word."""

    holders: list[str]
    arp_answerers: list[str]
    ipvs: dict[str, dict[str, int]]
    keepalived: dict[str, dict[str, str]]

    @property
    def ok(self) -> bool:
        return (len(self.holders) == 1 and self.arp_answerers == self.holders
                and bool(self.ipvs.get(self.holders[0])))

    def lines(self) -> list[str]:
        out = [f"VIP held by {', '.join(self.holders) or 'nobody'}; ARP answered by "
               f"{', '.join(self.arp_answerers) or 'nobody'}"]
        for d, st in self.keepalived.items():
            table = self.ipvs.get(d)
            out.append(f"  {d}: keepalived says {', '.join(f'{i} {s}' for i, s in st.items())}"
                       f"; IPVS {table if table else 'empty'}")
        return out


def holding(lab: Lab) -> Holding:
    census = arp.census(lab)
    return Holding(holders(lab), sorted(census.hosts),
                   {d: rs_in_table(lab, d) for d in directors(lab)},
                   {d: keepalived.state(lab, d) for d in directors(lab)})


@dataclass
class Failover:
    fault: Fault
    old: str
    new: str | None
    #: Seconds from the fault to the first connection that worked through the VIP.
    seconds_to_connection: float | None
    #: Gratuitous ARPs (who-has VIP tell VIP, or unsolicited replies) seen from the new holder.
    garps: int
    client_entry: str | None
    #: The connection opened before the fault: "answers", "reset" or "hangs".
    established: str
    evidence: list[str] = field(default_factory=list)


def still(sock: socket.socket) -> str:
    """Does an open connection still work: "answers", "reset" or "hangs"."""
    sock.settimeout(scaled(2))
    try:
        sock.sendall(b"after failover\n")
        return "answers" if sock.recv(100) == b"after failover\n" else "reset"
    except TimeoutError:
        return "hangs"
    except OSError:
        return "reset"


def first_connection(lab: Lab, t0: float, deadline: float = 30.0) -> tuple[float, str]:
    """Poll with short connections until one works; (seconds since ``t0``, server)."""
    def attempt() -> str | None:
        try:
            return client.connect(lab, timeout=0.5).server
        except client.ConnectError:
            return None
    server = wait_for(attempt, deadline, "a connection through the VIP to work again",
                      interval=0.05, max_interval=0.1)
    return time.monotonic() - t0, server


def lan_link(lab: Lab, host: str, state: Literal["up", "down"]) -> None:
    """Set ``host``'s LAN interface up or down (a cable pulled, a switch port lost)."""
    ipr = lab.ipr(host)
    ipr.link("set", index=ipr.link_lookup(ifname=lab.topology.lan_iface(host))[0],
             state=state)


def fail(lab: Lab, old: str, fault: Fault) -> None:
    """Cause ``fault`` on director ``old``."""
    if fault == "link":
        lan_link(lab, old, "down")
    else:
        keepalived.stop(lab, old, crash=fault == "crash")


def failover(lab: Lab, fault: Fault = "link", sync_wait: bool = False) -> Failover:
    """Open a connection, cause ``fault`` on the VIP's holder, and measure the takeover:
    the time to the first working connection, the new holder's gratuitous ARP, the
    client's neighbour entry, and what became of the open connection."""
    old = wait_holder(lab)
    reply, sock = client.open_connection(lab)
    ev = [f"before: {old} holds the VIP; connection from port {reply.local[1]} to "
          f"{reply.server}"]
    others = [d for d in directors(lab) if d != old]
    if sync_wait:
        port = reply.local[1]
        wait_for(lambda: any(c.cport == port for o in others
                             for c in director.read_connections(lab, o)),
                 10, "the backup to receive the synced connection")
        ev.append("the backup has the connection (sync)")
    vip = lab.topology.main_service.vip
    with Capture(lab, "client", lab.topology.lan_iface("client")) as cap:
        t0 = time.monotonic()
        fail(lab, old, fault)
        seconds, server = first_connection(lab, t0)
        new = wait_holder(lab, not_=old) if fault != "crash" else None
    if new is None:  # a crashed master keeps the VIP: both may hold it
        now = holders(lab)
        new = next((h for h in now if h != old), None)
    macs = {lab.mac(d, lab.topology.lan_iface(d)): d for d in directors(lab)}
    garps = [a for f in cap.frames if not f.outgoing and (a := parse_arp(f.data))
             and a.psrc == vip and (a.pdst == vip or a.op == 2) and macs.get(a.hwsrc) == new]
    entry = arp.resolves_to(lab, "client", vip)
    try:
        established = still(sock)
    finally:
        sock.close()
    ev += [f"{fault} on {old}: first working connection after {seconds * 1000:.0f} ms "
           f"(served by {server})",
           f"{len(garps)} gratuitous ARPs for {vip} from {new}",
           f"client's neighbour entry for {vip}: {entry}",
           f"the connection opened before the fault {established}"]
    return Failover(fault, old, new, seconds, len(garps), entry, established, ev)


def restore(lab: Lab, host: str, fault: Fault) -> None:
    """Undo ``fault`` on ``host`` (link up, or keepalived started again)."""
    if fault == "link":
        lan_link(lab, host, "up")
    else:
        keepalived.start(lab, host)


@dataclass
class HealthCheck:
    server: str
    holder: str
    #: Seconds from stopping the service until IPVS on the holder dropped it.
    seconds_out: float | None
    #: Seconds from starting it again until IPVS had it back with its weight.
    seconds_in: float | None
    #: Where the connections made while it was out landed.
    while_out: list[str]
    evidence: list[str] = field(default_factory=list)


def health_check(lab: Lab, rs: str, service_pid: int, connections: int = 4,
                 timeout: float = 20.0) -> HealthCheck:
    """Stop ``rs``'s service (pid ``service_pid``): how long until keepalived takes it out
    of IPVS (read from the kernel), where new connections go, and how long until it is
    back after the service starts again."""
    holder = wait_holder(lab)
    weight = rs_in_table(lab, holder).get(rs)
    ev = [f"{holder} holds the VIP; IPVS has {rs} at weight {weight}"]
    t0 = time.monotonic()
    realserver.stop_service(service_pid)
    try:
        wait_for(lambda: rs_in_table(lab, holder).get(rs, 0) == 0, timeout,
                 f"IPVS on {holder} to take {rs} out")
        out = time.monotonic() - t0
    except Timeout:
        out = None
    while_out = [client.connect(lab).server for _ in range(connections)]
    ev.append(f"{rs}'s service stopped: " + (f"out of IPVS after {out * 1000:.0f} ms"
                                             if out is not None else "never taken out")
              + f"; {connections} new connections served by {while_out}")
    t1 = time.monotonic()
    realserver.start_service(lab, rs)
    try:
        wait_for(lambda: rs_in_table(lab, holder).get(rs, 0) > 0, timeout,
                 f"IPVS on {holder} to take {rs} back")
        back = time.monotonic() - t1
    except Timeout:
        back = None
    ev.append(f"{rs}'s service started: " + (f"back in IPVS after {back * 1000:.0f} ms"
                                             if back is not None else "never back"))
    return HealthCheck(rs, holder, out, back, while_out, ev)

"""Two directors: what goes wrong between an active and a standby IPVS director.

Both scenarios run plain ``ipvsadm`` sync daemons (``--start-daemon master`` /
``backup``, multicast 224.0.0.81:8848 on eth0) on a lab with a second director
(director2, 192.0.2.3) that holds the same IPVS table but not the VIP.

``backup-director-loop``: two boxes are each a director and a real server of the
same service. The standby receives DR frames for the VIP (on its ``lo``) from the
active director, and its own IPVS table schedules them again, half of the time
back to the active director, which already has the connection pointing at the
standby: the packet bounces between the two MACs (IPVS decrements the TTL on
each transmit since Linux 4.10, so it dies after ~64 trips instead of forever).
``net.ipv4.vs.backup_only=1`` disables the director function while the sync
daemon runs in backup mode (Documentation/networking/ipvs-sysctl.rst), so the
standby serves the packet locally; without it operators mark only frames not
coming from the other director's MAC and make the service a fwmark service
(acassen/keepalived#2450).

``sync-threshold-short-connections``: the master sends a connection to the
backup only when its incoming packet count modulo ``sync_period`` equals
``sync_threshold`` (default ``3 50``; ip_vs_sync.c ``ip_vs_sync_conn_needed``),
TCP state changes aside. A one-datagram UDP exchange (DNS, RADIUS) counts one
packet and is never synced, so the backup cannot carry it over a failover.
``sync_threshold = 1 50`` syncs it on its first packet. (For TCP, a threshold of
1 does not help: the first packet is the SYN, in a state IPVS never syncs.)
"""

from __future__ import annotations

import socket

from lab.builder import Lab, netns, sysctl
from lab.model import default_dr
from lab.model.defaults import LAN, RS_ARP_SYSCTLS
from lab.model.topology import Address, Host, Interface, RealServer, Topology
from lab.probes.capture import Capture
from lab.roles import client, director
from lab.scenarios.base import Outcome, Scenario, Variant, register
from lab.util import Timeout, scaled, wait_for
from lab.wire.frames import decode

SYNCID = "7"


def _standby(t: Topology, lo: list[Address] | None = None,
             sysctls: dict[str, str] | None = None) -> Host:
    """director2 at .3 on the LAN, right after the director."""
    d = t.host("director")
    h = Host("director2", "director", [Interface("eth0", "lan", [Address(f"{LAN}.3/24")])],
             lo=lo or [], sysctls=dict(sysctls or {}))
    t.hosts.insert(t.hosts.index(d) + 1, h)
    return h


def _daemon(lab: Lab, host: str, mode: str) -> None:
    director.ipvsadm(lab, "--start-daemon", mode, "--mcast-interface", "eth0",
                     "--syncid", SYNCID, host=host)


def _daemons(lab: Lab, host: str) -> str:
    return " ".join(director.ipvsadm(lab, "-L", "--daemon", host=host).split())


# backup-director-loop -----------------------------------------------------------------
def _loop_topology() -> Topology:
    """director (VIP on eth0) and director2 (VIP on lo): each a real server of the
    service, nothing else."""
    t = default_dr(rs=1, name="two-directors")
    svc = t.service
    assert svc is not None
    t.hosts = [h for h in t.hosts if h.name != "rs1"]
    _standby(t, lo=[Address(f"{svc.vip}/32")], sysctls=RS_ARP_SYSCTLS)
    svc.real_servers = [RealServer("director"), RealServer("director2")]
    return t.validate()


def _loop(lab: Lab, variant: Variant) -> Outcome:
    svc = lab.topology.service
    assert svc is not None
    backup_only = "0" if variant == "broken" else "1"
    director.configure(lab, host="director2")  # the same table on the standby
    _daemon(lab, "director2", "backup")
    sysctl.write(lab.ns("director2"), [("net.ipv4.vs.backup_only", backup_only)])
    ev = [f"director2: VIP on lo, the same IPVS table, sync daemon: "
          f"{_daemons(lab, 'director2')}; backup_only={backup_only}"]
    mac2 = lab.mac("director2")
    served, failed = [], []
    with Capture(lab, "director") as cap:
        for _ in range(4):
            try:
                served.append(client.connect(lab, timeout=1).server)
            except client.ConnectError as e:
                failed.append(str(e))
    ev.append(f"4 connections through the VIP: served by {served}, {len(failed)} failed"
              + (f" ({failed[0]})" if failed else ""))
    # frames for the VIP that director2 sent back to director: the loop
    bounced: dict[int, int] = {}
    ttls: dict[int, list[int]] = {}
    for f in cap.frames:
        d = decode(f.data)
        if not f.outgoing and d.eth_src == mac2 and d.dst == svc.vip and d.proto == 6:
            bounced[d.sport] = bounced.get(d.sport, 0) + 1
            ttls.setdefault(d.sport, []).append(f.data[22])
    if bounced:
        port, n = max(bounced.items(), key=lambda kv: kv[1])
        ev.append(f"director's eth0: {sum(bounced.values())} frames to {svc.vip} came back "
                  f"from director2's MAC {mac2} ({len(bounced)} client ports; port {port} "
                  f"{n} times, TTL {max(ttls[port])} down to {min(ttls[port])})")
    else:
        ev.append(f"director's eth0: no frame to {svc.vip} came back from director2's MAC")
    names = {lab.topology.primary_ip(h): h for h in ("director", "director2")}
    for h in names.values():  # what each one's IPVS scheduled, from its connection table
        conns = [c for c in director.read_connections(lab, h) if c.vip == svc.vip]
        ev.append(f"{h}'s ip_vs_conn: " + (", ".join(
            f"port {c.cport} -> {names.get(c.dest, c.dest)} {c.state}" for c in conns)
            or "no entry (its IPVS scheduled nothing)"))
    return Outcome(bool(bounced), ev)


register(Scenario(
    name="backup-director-loop",
    symptom="two boxes, each director and real server: some connections hang and the LAN "
            "carries the same packet back and forth between them",
    trigger="the standby holds the same IPVS table: the DR frames the active director sends "
            "it for the VIP are scheduled again, back to the active director",
    fix="net.ipv4.vs.backup_only=1 on the standby (with the sync daemon in backup mode: its "
        "IPVS then only serves locally), or a fwmark service that skips frames from the "
        "other director's MAC",
    broken=_loop_topology,
    fixed=_loop_topology,
    observe=_loop,
    source="Documentation/networking/ipvs-sysctl.rst (backup_only); "
           "https://github.com/acassen/keepalived/issues/2450; "
           "net/netfilter/ipvs/ip_vs_core.c (ip_vs_in: backup_only), ip_vs_xmit.c "
           "(decrement_ttl)",
    stimulus="load the table on the standby too and connect through the VIP several times",
))


# sync-threshold-short-connections -------------------------------------------------------
def _sync_topology() -> Topology:
    t = default_dr(protocol="udp", name="sync")
    _standby(t)
    return t.validate()


def _exchange(lab: Lab, datagrams: int) -> int:
    """A UDP "connection" of ``datagrams`` requests (each answered); its client port."""
    svc = lab.topology.service
    assert svc is not None
    s = netns.socket_in(lab.ns("client"), socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(scaled(2))
        s.connect((svc.vip, svc.port))
        for _ in range(datagrams):
            s.send(b"who\n")
            s.recv(4096)
        port: int = s.getsockname()[1]
        return port
    finally:
        s.close()


def _ports(lab: Lab, host: str) -> set[int]:
    return {c.cport for c in director.read_connections(lab, host)}


def _sync(lab: Lab, variant: Variant) -> Outcome:
    threshold = "3 50" if variant == "broken" else "1 50"
    director.configure(lab, host="director2")
    sysctl.write(lab.ns("director"), [("net.ipv4.vs.sync_threshold", threshold)])
    _daemon(lab, "director2", "backup")
    _daemon(lab, "director", "master")
    ev = [f"director: sync_threshold={threshold}, {_daemons(lab, 'director')}; "
          f"director2: {_daemons(lab, 'director2')}"]
    short = _exchange(lab, 1)
    longer = _exchange(lab, 3)
    on_master = _ports(lab, "director")
    ev.append(f"client port {short}: 1 request, port {longer}: 3 requests; director's "
              f"ip_vs_conn has " + ", ".join(
                  f"{p} {'yes' if p in on_master else 'NO'}" for p in (short, longer)))
    try:  # once the 3-packet exchange arrived, the 1-packet one was sent before it, or never
        wait_for(lambda: longer in _ports(lab, "director2"), 10,
                 "the 3-packet exchange on director2")
    except Timeout:
        ev.append(f"director2 never received port {longer}: the sync daemons do not work")
        return Outcome(False, ev)
    on_backup = _ports(lab, "director2")
    ev.append(f"director2's ip_vs_conn (after port {longer} arrived): port {short} "
              + ("present" if short in on_backup else "MISSING")
              + f", port {longer} present")
    return Outcome(short not in on_backup, ev)


register(Scenario(
    name="sync-threshold-short-connections",
    symptom="after a failover, short connections (one-datagram UDP exchanges) that were "
            "live on the old master are unknown to the new one",
    trigger="the sync daemon sends a connection only when its packet count reaches "
            "net.ipv4.vs.sync_threshold (default `3 50`: the 3rd, 53rd, ... packet); a "
            "connection with fewer packets never reaches the backup",
    fix="net.ipv4.vs.sync_threshold = `1 50` on the master (sync on the first packet), or "
        "tune sync_period/sync_refresh_period to the traffic",
    broken=_sync_topology,
    fixed=_sync_topology,
    observe=_sync,
    source="Documentation/networking/ipvs-sysctl.rst (sync_threshold, sync_refresh_period); "
           "net/netfilter/ipvs/ip_vs_sync.c (ip_vs_sync_conn_needed); "
           "https://github.com/acassen/keepalived/issues/1076",
    stimulus="start sync daemons on both directors and compare their connection tables "
             "after a short and a longer exchange",
))

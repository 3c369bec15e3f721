"""Probe what the director's net.ipv4.vs.* knobs do, on a running DR lab.

Each probe in :data:`PROBES` acts on a lab whose director carries the knobs
(the matrix builds one per cell: :func:`lab.sweep.matrix.measure_vs`) and is
a few packets and a read of ``/proc/net/ip_vs_conn``:

* ``midstream_scheduled`` (sloppy_tcp): a bare ACK to VIP:port with no IPVS
  entry creates one (sent to a real server) or not (the director's own stack
  answers it);
* ``icmp_scheduled`` (schedule_icmp): an ICMP "fragmentation needed" about a
  VIP:port -> client packet IPVS never saw is scheduled to a real server or not;
* ``nodest_expires`` (expire_nodest_conn): an established connection whose
  real server is deleted gets a reset at its next packet, or hangs;
* ``quiescent_sticks`` (expire_quiescent_template): with persistence, a client
  whose real server went to weight 0 is still sent there;
* ``reuse_delay`` (conn_reuse_mode, conntrack): a client reusing its source
  port while the director holds the old entry (FIN_WAIT under DR) waits for a
  SYN retransmission (~1 s), with conntrack in use in the director's namespace.

Waits are barriers, not sleeps: a probe packet is followed by a complete
connection along the same path, after which IPVS has seen the probe.
"""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass, field

import sh

from lab.builder import Lab, netns
from lab.model.predict import VS_BEHAVIOURS
from lab.probes.counters import rising
from lab.roles import client, director, realserver
from lab.util import scaled, wait_for


@dataclass
class VsObservation:
    values: dict[str, bool] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)


def _port() -> int:
    """A client port below the ephemeral range (no clash with the lab's own sockets)."""
    return 10000 + (time.monotonic_ns() // 1000) % 20000


def _entries(lab: Lab, cport: int) -> list[director.Connection]:
    return [c for c in director.read_connections(lab) if c.cport == cport]


def _barrier(lab: Lab) -> None:
    """A full connection along the client -> director path: IPVS has processed
    everything the client sent before it."""
    client.connect(lab)


def _send_raw(lab: Lab, proto: int, payload: bytes, dst: str) -> None:
    s = netns.socket_in(lab.ns("client"), socket.AF_INET, socket.SOCK_RAW, proto)
    try:
        s.sendto(payload, (dst, 0))
    finally:
        s.close()


def _midstream(lab: Lab, obs: VsObservation) -> None:
    # lazy: scapy takes ~1 s to import (~10 s in the VM)
    from scapy.layers.inet import IP, TCP

    svc = lab.topology.service
    assert svc is not None
    cip, port = lab.topology.primary_ip("client"), _port()
    seg = bytes(IP(src=cip, dst=svc.vip) / TCP(sport=port, dport=svc.port, flags="A",
                                                seq=1000, ack=1000))[20:]
    _send_raw(lab, socket.IPPROTO_TCP, seg, svc.vip)
    _barrier(lab)
    e = _entries(lab, port)
    obs.values["midstream_scheduled"] = bool(e)
    obs.evidence.append(f"bare ACK from port {port} to the VIP with no IPVS entry: "
                        + (f"scheduled to {e[0].dest} ({e[0].state})" if e else
                           "not scheduled (IPVS made no entry)"))


def _icmp(lab: Lab, obs: VsObservation) -> None:
    # lazy: scapy takes ~1 s to import (~10 s in the VM)
    from scapy.layers.inet import ICMP, IP, TCP

    svc = lab.topology.service
    assert svc is not None
    cip, port = lab.topology.primary_ip("client"), _port()
    inner = IP(src=svc.vip, dst=cip) / TCP(sport=svc.port, dport=port, flags="SA")
    msg = bytes(ICMP(type=3, code=4, nexthopmtu=1400) / bytes(inner)[:28])
    _send_raw(lab, socket.IPPROTO_ICMP, msg, svc.vip)
    _barrier(lab)
    e = _entries(lab, port)
    obs.values["icmp_scheduled"] = bool(e)
    obs.evidence.append(f"ICMP frag-needed about VIP:{svc.port} -> client:{port} (no entry): "
                        + (f"scheduled to {e[0].dest}" if e else "not scheduled"))


def _nodest(lab: Lab, obs: VsObservation) -> None:
    svc = lab.topology.service
    assert svc is not None
    reply, s = client.open_connection(lab)
    director.remove_dest(lab, reply.server)
    try:
        s.setblocking(False)
        s.send(b"after delete\n")
        _barrier(lab)
        # a reset, if any, was sent while IPVS handled that packet: before the barrier
        try:
            got = f"data {s.recv(100)!r}"
        except BlockingIOError:
            got = "nothing"
        except OSError as e:
            got = errno.errorcode.get(e.errno or 0, str(e))
    finally:
        s.close()
        director.set_weight(lab, reply.server, 1, how="-a")
    reset = got == "ECONNRESET"
    obs.values["nodest_expires"] = reset
    obs.evidence.append(f"connection to {reply.server}, {reply.server} deleted from the "
                        f"service, then data: the client got {got} "
                        + ("(entry expired, the packet handled anew and reset)" if reset else
                           "(IPVS dropped it: the client hangs)"))


def _quiescent(lab: Lab, obs: VsObservation) -> None:
    svc = lab.topology.service
    assert svc is not None
    spec = director.service_spec(svc).split()
    director.ipvsadm(lab, "-E", *spec, "-s", svc.scheduler, "-p", "60")
    first = client.connect(lab).server
    director.set_weight(lab, first, 0)
    then = client.connect(lab).server
    director.set_weight(lab, first, 1)
    director.ipvsadm(lab, "-E", *spec, "-s", svc.scheduler)
    obs.values["quiescent_sticks"] = then == first
    obs.evidence.append(f"persistent service: first connection to {first}; {first} at weight "
                        f"0; next connection to {then}")


def use_conntrack(lab: Lab) -> None:
    """Put conntrack to use in the director's namespace, as any ruleset matching
    ``ct state`` does (net.ipv4.vs.conntrack alone does not load it)."""
    sh.Command("ip")("netns", "exec", lab.ns("director"), "nft", "-f", "-", _in=(
        "table ip drlab_conntrack {\n  chain pre {\n    type filter hook prerouting priority 0;\n"
        "    ct state new counter\n  }\n}\n"))


@dataclass
class Reconnect:
    """Two connections from one client port (:func:`reconnect_same_port`)."""

    port: int
    #: Wall time of each connect (evidence only: the VM's clock runs slow work).
    delays: list[float]
    #: SYN retransmissions the client's kernel made for each connect
    #: (TcpExt.TCPSynRetrans): a first SYN that IPVS dropped shows here.
    syn_retrans: list[int]
    #: States of IPVS's entries for the port after the second connection.
    states: list[str]

    @property
    def delayed(self) -> bool:
        """The reused port's first SYN was lost: the client waited for its retransmission."""
        return self.syn_retrans[1] > 0

    def __str__(self) -> str:
        return (f"connect from port {self.port} took {self.delays[0] * 1000:.0f} ms "
                f"({self.syn_retrans[0]} SYN retransmissions), again from the same port "
                f"{self.delays[1] * 1000:.0f} ms ({self.syn_retrans[1]} SYN retransmissions; "
                f"IPVS entries for the port: {', '.join(self.states) or 'none'})")


def connect_from_port(lab: Lab, port: int) -> tuple[socket.socket, float, int]:
    """Connect the client to the VIP from source port ``port`` once the previous
    socket with that port is gone (LAST_ACK -> CLOSED): ``(socket, seconds, SYN
    retransmissions)``. The caller owns (and closes) the socket."""
    svc = lab.topology.service
    assert svc is not None
    wait_for(lambda: f":{port:04X} " not in netns.read_proc(lab.ns("client"), "net/tcp"),
             5, f"port {port} to be free")
    s = netns.socket_in(lab.ns("client"), socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.settimeout(scaled(5))
        syns = rising(lab, "TcpExt.TCPSynRetrans", ["client"])
        t0 = time.monotonic()
        s.connect((svc.vip, svc.port))
        took = time.monotonic() - t0
    except BaseException:
        s.close()
        raise
    return s, took, syns().get("client", 0)


def reconnect_same_port(lab: Lab) -> Reconnect:
    """Connect twice from one client port, the server closing first each time (so
    the client keeps no TIME_WAIT and may reuse the port at once)."""
    port = _port()
    delays: list[float] = []
    retrans: list[int] = []
    states: list[str] = []
    for _ in range(2):
        s, took, syns = connect_from_port(lab, port)
        try:
            delays.append(took)
            retrans.append(syns)
            s.recv(200)
            s.sendall(realserver.BYE)
            while s.recv(200):
                pass
        finally:
            s.close()
        states = sorted({c.state for c in _entries(lab, port)})
    return Reconnect(port, delays, retrans, states)


def _reuse(lab: Lab, obs: VsObservation) -> None:
    use_conntrack(lab)
    r = reconnect_same_port(lab)
    obs.values["reuse_delay"] = r.delayed
    obs.evidence.append(str(r))


#: Probe order: the ones that leave state behind (persistence edits, the
#: conntrack ruleset) come last.
PROBES = {"midstream_scheduled": _midstream, "icmp_scheduled": _icmp,
          "nodest_expires": _nodest, "quiescent_sticks": _quiescent, "reuse_delay": _reuse}
assert set(PROBES) == set(VS_BEHAVIOURS)

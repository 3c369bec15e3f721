"""The connection table: what IPVS's entries (/proc/net/ip_vs_conn) do to flows.

* ``ipvs-idle-timeout``: an idle TCP connection outlives its IPVS entry
  (``ipvsadm --set``); the client's next segment is not a SYN, so IPVS does not
  schedule it and the director's own stack (it holds the VIP) answers it with a
  reset, while the real server still holds its socket (moby/moby#31208,
  kube-router#911). TCP keepalive shorter than the timeout refreshes the entry.
* ``udp-stale-destination``: a UDP client reusing its source port stays on its
  entry's real server after that server is drained (weight 0) or deleted; with
  ``expire_nodest_conn=0`` IPVS drops the datagrams of a deleted one
  (kubernetes/kubernetes#71514, #76664). ``expire_nodest_conn=1`` expires the
  entries (since 5.9 from a delayed work queued when the real server is deleted:
  kernel commit 04231e52d355, "ipvs: queue delayed work to expire no destination
  connections if expire_nodest_conn=1").
* ``persistence-behind-snat``: source hashing (``sh``, as persistence does per
  client address) sends every client behind one SNAT address to one real
  server; ``mh`` with port hashing (``-b mh-port``) spreads them.
* ``conn-reuse-stall``: kubernetes/kubernetes#93297. A SYN reusing the port of a
  finished IPVS entry (TIME_WAIT/CLOSE, the default conn_reuse_mode=1) is dropped
  when the old conntrack entry is still confirmed, so that both expire first; the
  client stalls 1 s for its SYN retransmission. kube-proxy therefore set
  conn_reuse_mode=0, which sends the reused port back to the old real server even
  when it was drained or removed (kubernetes/kubernetes#81775). Kernel 5.9
  (commit f0a5e4d7a594, "ipvs: allow connection reuse for unconfirmed
  conntrack") reschedules at once when conntrack replaced the old entry with a
  new, unconfirmed one, as it does for a TIME_WAIT connection it saw both ways
  (NAT, kube-proxy's case). A DR director's conntrack sees only the client's half,
  and measured on 6.1 (bookworm) the reused SYN after a reset still finds the old
  confirmed entry and is dropped. Debian's archive here serves no kernel before
  5.9 (buster's 4.19 has left the main archive; the archive host does not
  resolve), so the pre-5.9 behaviour for NAT is cited, not run. Exempting the
  service from conntrack on the director fixes it. The catalogue's
  ``conn-reuse-delay`` is the FIN_WAIT case (conn_reuse_mode=3), fixed with
  net.ipv4.vs.conntrack=0.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Callable

import sh

from lab.builder import Lab, netns, sysctl
from lab.model import default_dr
from lab.probes.capture import Capture
from lab.probes.vs_knobs import connect_from_port, use_conntrack
from lab.roles import client, director
from lab.scenarios.base import Outcome, Scenario, Variant, register
from lab.util import scaled, wait_for

#: ipvsadm --set TCP TCPFIN UDP for the idle-timeout scenario (seconds).
IDLE_TIMEOUT = 3


def _free_port() -> int:
    """A client port below the ephemeral range, different on every call."""
    return 20000 + (time.monotonic_ns() // 1000) % 20000


def _entries(lab: Lab, cport: int) -> list[director.Connection]:
    return [c for c in director.read_connections(lab) if c.cport == cport]


def _watch(cond: Callable[[], object], seconds: float) -> bool:
    """Poll ``cond`` for ``seconds`` of real time (kernel timers do not run slow
    in the VM, so this window is not scaled); True as soon as it holds."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


def _rs_holds(lab: Lab, rs: str, cport: int) -> bool:
    """``rs`` has an ESTABLISHED TCP socket with the client's port ``cport``."""
    for line in netns.read_proc(lab.ns(rs), "net/tcp").splitlines()[1:]:
        f = line.split()
        if len(f) > 3 and f[2].endswith(f":{cport:04X}") and f[3] == "01":
            return True
    return False


def _resets(lab: Lab, cap: Capture, cport: int) -> list[str]:
    """Who sent the resets to the client's port seen in ``cap`` (by source MAC)."""
    # lazy: scapy takes ~1 s to import (~10 s in the VM)
    from scapy.layers.inet import TCP

    owners = {lab.mac(h.name).lower(): h.name for h in lab.topology.hosts}
    out = []
    for p in cap.packets():
        if TCP in p and p[TCP].dport == cport and p[TCP].flags & 0x04:
            out.append(owners.get(p.src.lower(), p.src))
    return out


# -- ipvs-idle-timeout ----------------------------------------------------------

def _idle(lab: Lab, variant: Variant) -> Outcome:
    director.ipvsadm(lab, "--set", *(str(IDLE_TIMEOUT),) * 3)
    reply, s = client.open_connection(lab)
    cport = reply.local[1]
    ev = [f"ipvsadm --set {IDLE_TIMEOUT} {IDLE_TIMEOUT} {IDLE_TIMEOUT}; connection from port "
          f"{cport} served by {reply.server}"]
    if variant == "fixed":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 5)
        ev.append("client socket: SO_KEEPALIVE, TCP_KEEPIDLE=1 s, TCP_KEEPINTVL=1 s")
    try:
        t0 = time.monotonic()
        if variant == "broken":
            wait_for(lambda: not _entries(lab, cport), IDLE_TIMEOUT + 5,
                     "the idle connection's IPVS entry to expire")
            ev.append(f"idle: IPVS entry gone after {time.monotonic() - t0:.1f} s")
        else:
            window = 2 * IDLE_TIMEOUT + 1
            gone = _watch(lambda: not _entries(lab, cport), window)
            e = _entries(lab, cport)
            ev.append(f"idle {time.monotonic() - t0:.1f} s: IPVS entry "
                      + ("gone" if gone else f"still there ({e[0].state}, expires in "
                                             f"{e[0].expires} s)"))
        held = _rs_holds(lab, reply.server, cport)
        ev.append(f"{reply.server} {'still holds' if held else 'holds no'} an ESTABLISHED "
                  f"socket for port {cport}; the client's is open")
        s.settimeout(scaled(2))
        with Capture(lab, "client") as cap:
            try:
                s.sendall(b"still there?\n")
                got = s.recv(100)
                fate = "echoed" if got.startswith(b"still there?") else f"got {got!r}"
            except TimeoutError:
                fate = f"no answer in {scaled(2):.0f} s"
            except OSError as err:
                fate = errno.errorcode.get(err.errno or 0, str(err))
        rst = _resets(lab, cap, cport)
        ev.append(f"then data from the client: {fate}"
                  + (f" (reset sent by {', '.join(sorted(set(rst)))}: IPVS did not schedule "
                     "the non-SYN segment, the director's own stack answered it)"
                     if rst else ""))
        after = _entries(lab, cport)
        ev.append("IPVS entries for the port now: "
                  + (", ".join(f"{c.dest} {c.state}" for c in after) or "none"))
    finally:
        s.close()
    return Outcome(fate != "echoed", ev)


register(Scenario(
    name="ipvs-idle-timeout",
    symptom="an idle TCP connection through the VIP dies (reset or hang) though both ends "
            "still hold their sockets",
    trigger="the connection idles longer than IPVS's TCP timeout (ipvsadm --set): the entry "
            "expires and the next segment, not a SYN, is not scheduled (the director's "
            "stack resets it)",
    fix="TCP keepalive shorter than the timeout (SO_KEEPALIVE, TCP_KEEPIDLE/INTVL) keeps the "
        "entry alive; or raise the timeout above the applications' idle time",
    broken=lambda: default_dr(),
    fixed=lambda: default_dr(),
    observe=_idle,
    stimulus="open a connection, let it idle past the IPVS timeout, then send",
    source=("https://github.com/moby/moby/issues/31208; "
            "https://github.com/cloudnativelabs/kube-router/issues/911; ipvsadm(8) (--set); "
            "net/netfilter/ipvs/ip_vs_proto_tcp.c (tcp_conn_schedule: only a SYN is "
            "scheduled unless sloppy_tcp)"),
))


# -- udp-stale-destination ------------------------------------------------------

def _ask(s: socket.socket, tries: int = 4) -> tuple[str | None, int]:
    """Send from the bound socket until an answer comes: (server, datagrams sent)."""
    for n in range(1, tries + 1):
        s.send(b"who\n")
        try:
            line = client.read_line(s, time.monotonic() + scaled(0.5))
            return line.split()[0], n
        except client.ConnectError:
            continue
    return None, tries


def _udp_stale(lab: Lab, variant: Variant) -> Outcome:
    svc = lab.topology.service
    assert svc is not None
    nodest = "0" if variant == "broken" else "1"
    sysctl.write(lab.ns("director"), [("net.ipv4.vs.expire_nodest_conn", nodest)])
    port = _free_port()
    s = netns.socket_in(lab.ns("client"), socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((lab.topology.primary_ip("client"), port))
        s.connect((svc.vip, svc.port))
        first, _ = _ask(s)
        assert first is not None, "no answer over UDP before any change"
        ev = [f"expire_nodest_conn={nodest}; datagrams from fixed port {port} served by {first}"]
        director.set_weight(lab, first, 0)
        drained, _ = _ask(s)
        ev.append(f"{first} drained (weight 0): the same port is still served by {drained}")
        director.remove_dest(lab, first)
        # an expiry queued by the deletion runs from a work queue: let it run
        wait_for(lambda: not any(c.dest == lab.topology.primary_ip(first)
                                 for c in _entries(lab, port)) or variant == "broken",
                 3, "the deleted server's entries to expire")
        then, sent = _ask(s)
        ents = _entries(lab, port)
        ev.append(f"{first} deleted (ipvsadm -d): "
                  + (f"served by {then} after {sent} datagram(s)" if then else
                     f"{sent} datagrams, no answer"))
        ev.append("IPVS entries for the port: "
                  + (", ".join(f"{c.dest} expires in {c.expires} s" for c in ents) or "none"))
    finally:
        s.close()
    return Outcome(then is None or then == first, ev)


register(Scenario(
    name="udp-stale-destination",
    symptom="a UDP client keeps sending to a removed (or drained) real server and gets no "
            "answer while it reuses its source port",
    trigger="the IPVS entry of the flow outlives its real server: every datagram refreshes it "
            "(UDP timeout), and with expire_nodest_conn=0 IPVS drops what it matches once "
            "the server is deleted",
    fix="net.ipv4.vs.expire_nodest_conn=1 (the entries of a deleted server expire and the "
        "flow is rescheduled), or flush the flow's entries; a drained (weight 0) server keeps "
        "its flows either way",
    broken=lambda: default_dr(protocol="udp", port=53),
    fixed=lambda: default_dr(protocol="udp", port=53),
    observe=_udp_stale,
    stimulus="UDP from one fixed source port, then drain and delete its real server",
    source=("https://github.com/kubernetes/kubernetes/issues/71514; "
            "https://github.com/kubernetes/kubernetes/issues/76664; "
            "Documentation/networking/ipvs-sysctl.rst (expire_nodest_conn); "
            "net/netfilter/ipvs/ip_vs_core.c (ip_vs_in: destination not available); kernel "
            "commit 04231e52d355 (5.9, expire nodest connections from a work queue)"),
))


# -- persistence-behind-snat ----------------------------------------------------

CONNS = 12


def _spread(lab: Lab) -> tuple[dict[str, int], str]:
    """:data:`CONNS` connections from the client's one address: replies per real server,
    and IPVS's entries per real server (/proc/net/ip_vs_conn) as a line."""
    before = {(c.cport, c.dest) for c in director.read_connections(lab)}
    servers = [client.connect(lab).server for _ in range(CONNS)]
    counts = {s: servers.count(s) for s in sorted(set(servers))}
    new = [c for c in director.read_connections(lab)  # cport 0: a persistence template
           if c.cport and (c.cport, c.dest) not in before]
    per = {d: sum(c.dest == d for c in new) for d in sorted({c.dest for c in new})}
    return counts, ", ".join(f"{k} x{v}" for k, v in per.items())


def _snat(lab: Lab, variant: Variant) -> Outcome:
    svc = lab.topology.service
    assert svc is not None
    spec = director.service_spec(svc).split()
    ev = []
    if variant == "fixed":
        director.ipvsadm(lab, "-E", *spec, "-s", "mh", "-b", "mh-port")
        ev.append("scheduler mh with -b mh-port, set in the observation with ipvsadm -E "
                  "(the model has no scheduler flags)")
    else:
        ev.append(f"scheduler {svc.scheduler}")
    counts, table = _spread(lab)
    ev.append(f"{CONNS} connections from one client address (one SNAT address) answered by "
              + ", ".join(f"{k} x{v}" for k, v in counts.items())
              + f"; IPVS entries per real server: {table}")
    if variant == "broken":  # persistence is keyed on the address too
        director.ipvsadm(lab, "-E", *spec, "-s", "rr", "-p", "60")
        pcounts, ptable = _spread(lab)
        ev.append("the same under rr with persistence (-p 60): answered by "
                  + ", ".join(f"{k} x{v}" for k, v in pcounts.items())
                  + f"; IPVS entries per real server: {ptable}")
    return Outcome(len(counts) == 1, ev)


register(Scenario(
    name="persistence-behind-snat",
    symptom="every client behind one SNAT address lands on one real server (the others idle)",
    trigger="a scheduler keyed on the client address only: sh (or persistence, whose "
            "template is per client address, per netmask with -M)",
    fix="hash the client port too: mh with -b mh-port (or sh -b sh-port); with persistence, a "
        "netmask that fits the clients (-M 255.255.255.255 keeps SNAT pool addresses apart, a "
        "wider one merges them)",
    broken=lambda: default_dr(rs=3, scheduler="sh"),
    fixed=lambda: default_dr(rs=3, scheduler="mh"),
    observe=_snat,
    stimulus="many connections from one client address, counted per real server",
    source=("LVS-HOWTO, persistence (https://www.austintek.com/LVS/LVS-HOWTO/HOWTO/"
            "LVS-HOWTO.persistent_connection.html); ipvsadm(8) (-p, -M, -b mh-port); "
            "net/netfilter/ipvs/ip_vs_mh.c, ip_vs_sh.c"),
))


# -- conn-reuse-stall -----------------------------------------------------------

def _connect_from(lab: Lab, port: int) -> tuple[socket.socket, str, int, float]:
    """Connect from client port ``port``: (socket, server, SYN retransmissions, seconds)."""
    s, took, syns = connect_from_port(lab, port)
    server = client.read_line(s, time.monotonic() + scaled(3)).split()[0]
    return s, server, syns, took


def _notrack(lab: Lab) -> None:
    """Exempt the service's packets from conntrack on the director (raw prerouting)."""
    svc = lab.topology.service
    assert svc is not None
    sh.Command("ip")("netns", "exec", lab.ns("director"), "nft", "-f", "-", _in=(
        "table ip drlab_notrack {\n  chain raw {\n"
        "    type filter hook prerouting priority raw;\n"
        f"    ip daddr {svc.vip} tcp dport {svc.port} notrack\n  }}\n}}\n"))


def _reuse_after_reset(lab: Lab, drain: bool) -> tuple[str, str, int, float, str]:
    """Connect from a fixed port, close with a reset, optionally drain the server,
    connect again from the port: (first server, second, SYN retransmissions,
    seconds, IPVS state of the old entry)."""
    port = _free_port()
    s, first, _, _ = _connect_from(lab, port)
    # SO_LINGER 0: the close is a reset, so the client keeps no TIME_WAIT, and
    # IPVS's DR entry (it sees only the client's half) goes to CLOSE: reusable
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    states = wait_for(lambda: [c.state for c in _entries(lab, port) if c.state == "CLOSE"],
                      5, "the IPVS entry to reach CLOSE")
    if drain:
        director.set_weight(lab, first, 0)
    s2, then, retrans, took = _connect_from(lab, port)
    s2.close()
    if drain:
        director.set_weight(lab, first, 1)
    return first, then, retrans, took, states[0]


def _reuse_stall(lab: Lab, variant: Variant) -> Outcome:
    use_conntrack(lab)  # conntrack in use on the director, as kube-proxy's rules make it
    sysctl.write(lab.ns("director"), [("net.ipv4.vs.conn_reuse_mode", "1"),
                                      ("net.ipv4.vs.conntrack", "1")])
    if variant == "fixed":
        _notrack(lab)
    ev = []
    first, then, retrans, took, state = _reuse_after_reset(lab, drain=False)
    ev.append("conn_reuse_mode=1 conntrack=1"
              + (", VIP traffic notrack on the director" if variant == "fixed" else "")
              + f": connection served by {first}, closed with a reset (IPVS entry {state}); "
              f"again from the same port: served by {then} after {took * 1000:.0f} ms, "
              f"{retrans} SYN retransmission(s)"
              + (" (the first SYN was dropped)" if retrans else ""))
    if variant == "broken":  # kube-proxy's workaround, for comparison
        sysctl.write(lab.ns("director"), [("net.ipv4.vs.conn_reuse_mode", "0")])
        f0, t0, r0, took0, _ = _reuse_after_reset(lab, drain=True)
        ev.append(f"workaround conn_reuse_mode=0, {f0} drained (weight 0) before the reuse: "
                  f"served by {t0} after {took0 * 1000:.0f} ms, {r0} SYN retransmission(s)"
                  + (" (back to the drained server: kubernetes#81775)" if t0 == f0 else ""))
    return Outcome(retrans > 0, ev)


register(Scenario(
    name="conn-reuse-stall",
    symptom="a client reusing a source port waits about 1 s for its connection, with the "
            "default conn_reuse_mode=1",
    trigger="a SYN from a port whose IPVS entry is finished (CLOSE after a reset; TIME_WAIT "
            "under NAT) while the director's conntrack still holds the old, confirmed entry: "
            "IPVS drops the SYN to let both expire (kubernetes#93297); kernel 5.9 "
            "(f0a5e4d7a594) stopped that only when conntrack starts a fresh entry, which a DR "
            "director's one-sided conntrack does not here",
    fix="keep the service's packets out of conntrack on the director (nftables notrack for "
        "VIP:port; net.ipv4.vs.conntrack=0 where nothing needs it): the SYN is rescheduled at "
        "once. Not conn_reuse_mode=0 (kube-proxy's old workaround): it sends the reused port "
        "back to the old real server, drained or not",
    broken=lambda: default_dr(),
    fixed=lambda: default_dr(),
    observe=_reuse_stall,
    stimulus="reconnect from the same client port after closing it with a reset",
    source=("https://github.com/kubernetes/kubernetes/issues/93297; "
            "https://github.com/kubernetes/kubernetes/issues/70747; "
            "https://github.com/kubernetes/kubernetes/issues/81775; "
            "Documentation/networking/ipvs-sysctl.rst (conn_reuse_mode, conntrack); "
            "net/netfilter/ipvs/ip_vs_core.c (ip_vs_in: is_new_conn_expected, "
            "ip_vs_conn_uses_old_conntrack); kernel commit f0a5e4d7a594 (5.9, 'ipvs: allow "
            "connection reuse for unconfirmed conntrack')"),
))

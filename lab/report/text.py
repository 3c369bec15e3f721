"""Readable reports of a running lab (what ``drlab demo`` prints)."""

from __future__ import annotations

from collections import Counter

from lab.builder import Lab, netns
from lab.model import Topology
from lab.probes import state
from lab.roles import client, director, up
from lab.util import Timeout, table, wait_for


def hosts_table(lab: Lab) -> str:
    rows = []
    for h in lab.topology.hosts:
        first = True
        for st in state.interfaces(lab, h.name):
            addrs = [a for a in st.addresses if not a.startswith("127.")]
            if st.name == "lo" and not addrs:
                continue
            rows.append([h.name if first else "", h.role if first else "",
                         lab.ns(h.name) if first else "", st.name,
                         st.mac if st.name != "lo" else "-", " ".join(addrs) or "-"])
            first = False
    return table(rows, ["host", "role", "namespace", "if", "MAC", "addresses"])


def demo_report(lab: Lab, connections: int = 6) -> tuple[str, bool]:
    """Send ``connections`` requests to the VIP and report; returns (text, all checks ok)."""
    t = lab.topology
    svc = t.service
    assert svc is not None
    out = [f"Lab {lab.id}: topology {t.name!r}, VIP {svc.vip}:{svc.port}/{svc.protocol}, "
           f"scheduler {svc.scheduler}", "", "Hosts", hosts_table(lab), "",
           "IPVS table (ipvsadm -Ln, in the director's namespace)"]
    out += ["  " + x for x in director.ipvsadm(lab, "-Ln").rstrip().splitlines()]

    replies = [client.connect(lab) for _ in range(connections)]
    out += ["", f"Requests (client {t.primary_ip('client')} -> VIP {svc.vip}:{svc.port})"]
    out.append(table([[str(n + 1), r.server, f"{r.peer[0]}:{r.peer[1]}",
                       f"{r.server_saw_client[0]}:{r.server_saw_client[1]}",
                       f"{r.server_local[0]}:{r.server_local[1]}"]
                      for n, r in enumerate(replies)],
                     ["#", "answered by", "client's peer", "server saw client",
                      "server's local addr"]))
    dist = Counter(r.server for r in replies)
    live = [rs.host for rs in svc.real_servers if rs.weight > 0]
    out.append("  distribution: " + ", ".join(f"{h} {dist.get(h, 0)}" for h in live))

    # IPVS folds its per-CPU counters into the totals it reports from the
    # estimator timer (every 2 s on recent kernels): poll until they settle.
    try:
        stats = wait_for(lambda: st if (st := director.read_service(lab).stats).conns
                         >= connections else None,
                         timeout=6, what="IPVS counters to include the requests")
    except Timeout:
        stats = director.read_service(lab).stats
    checks: list[tuple[bool, str]] = [
        (all(r.peer == (svc.vip, svc.port) for r in replies),
         f"every reply came from the VIP {svc.vip}:{svc.port}, never a real server's address"),
        (all(r.server_local == (svc.vip, svc.port) for r in replies),
         "every real server accepted on the VIP (held on lo)"),
        (stats.conns == connections,
         f"IPVS counted {stats.conns} connections for {connections} requests"),
        (stats.outpkts == 0,
         f"IPVS OutPkts = {stats.outpkts}: replies bypass the director (DR)"),
    ]
    if svc.scheduler == "rr" and len({rs.weight for rs in svc.real_servers}) == 1:
        counts = [dist.get(h, 0) for h in live]
        checks.append((max(counts) - min(counts) <= 1,
                       f"rr spread {connections} requests evenly over {len(live)} real servers"))
    out += ["", "Checks"]
    out += [f"  [{'ok' if ok else 'FAIL'}] {msg}" for ok, msg in checks]
    return "\n".join(out), all(ok for ok, _ in checks)


def demo(topology: Topology, connections: int = 6) -> tuple[str, bool]:
    """``drlab demo``: build ``topology``, report on ``connections`` requests, tear
    down, and say what was left; returns (text, every check passed and nothing left)."""
    lab = up(topology)
    try:
        text, ok = demo_report(lab, connections)
    finally:
        removed = lab.teardown()
    left = [n for n in netns.listing() if n.startswith(f"drl-{lab.id}-")]
    text += (f"\nTorn down lab {lab.id}: removed {len(removed)} namespaces and processes; "
             f"{len(left)} namespaces left.")
    return text, ok and not left

"""Load through the VIP: many short connections and many held-open ones, nothing lost."""

from collections import Counter

import pytest

from lab.probes import path
from lab.roles import client, director
from lab.util import wait_for

pytestmark = pytest.mark.ipvs

SHORT = 1000
HELD = 100


def test_thousand_short_and_hundred_held_open_connections(dr_lab):
    held = []
    try:
        ports = []
        for _ in range(HELD):
            reply, sock = client.open_connection(dr_lab)
            held.append((reply.server, sock))
            ports.append(reply.local[1])
        replies = [client.connect(dr_lab) for _ in range(SHORT)]
        short = Counter(r.server for r in replies)
        ports += [r.local[1] for r in replies]
        reused = SHORT + HELD - len(set(ports))  # see below: these skip the scheduler
        # rr alternates: every connection, held or short, found a server
        assert sum(short.values()) == SHORT
        assert abs(short["rs1"] - short["rs2"]) <= 2 * reused, short
        assert Counter(s for s, _ in held) == {"rs1": HELD // 2, "rs2": HELD // 2}
        # the held-open connections are all still alive and answer through DR
        for n, (_server, sock) in enumerate(held):
            sock.sendall(f"ping {n}\n".encode())
            assert sock.recv(100) == f"ping {n}\n".encode()
        # IPVS counts connection entries: a client port the kernel hands out again
        # while the director still holds its old entry (FIN_WAIT under DR, 2 min;
        # the client's TIME_WAIT lasts 1 min) reuses that entry and is not counted
        # (conn_reuse_mode=1 reschedules only TIME_WAIT/CLOSE entries)
        entries = SHORT + HELD - reused
        svc = wait_for(lambda: (s := director.read_service(dr_lab)).stats.conns >= entries
                       and s, timeout=10, what="IPVS counters to catch up")
        assert svc.stats.conns == entries, (
            f"{SHORT + HELD} connections from {entries} distinct client ports, "
            f"IPVS counted {svc.stats.conns}")  # counters agree with what the clients saw
        assert svc.stats.outpkts == 0
        assert sum(d.stats.conns for d in svc.dests) == entries
        assert sum(d.active_conns for d in svc.dests) == HELD
    finally:
        for _, sock in held:
            sock.close()
    proof = path.prove(dr_lab, connections=2)  # and the DR path still holds afterwards
    assert proof.ok, proof.ladder()

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
        for _ in range(HELD):
            reply, sock = client.open_connection(dr_lab)
            held.append((reply.server, sock))
        short = Counter(client.connect(dr_lab).server for _ in range(SHORT))
        # rr alternates: every connection, held or short, found a server
        assert short == {"rs1": SHORT // 2, "rs2": SHORT // 2}
        assert Counter(s for s, _ in held) == {"rs1": HELD // 2, "rs2": HELD // 2}
        # the held-open connections are all still alive and answer through DR
        for n, (_server, sock) in enumerate(held):
            sock.sendall(f"ping {n}\n".encode())
            assert sock.recv(100) == f"ping {n}\n".encode()
        svc = wait_for(lambda: (s := director.read_service(dr_lab)).stats.conns >= SHORT + HELD
                       and s, timeout=10, what="IPVS counters to catch up")
        assert svc.stats.conns == SHORT + HELD  # counters agree with what the clients saw
        assert svc.stats.outpkts == 0
        assert sorted(d.stats.conns for d in svc.dests) == [(SHORT + HELD) // 2] * 2
        assert sum(d.active_conns for d in svc.dests) == HELD
    finally:
        for _, sock in held:
            sock.close()
    proof = path.prove(dr_lab, connections=2)  # and the DR path still holds afterwards
    assert proof.ok, proof.ladder()

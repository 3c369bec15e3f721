"""Firewall-mark services: the director marks traffic (nftables), IPVS balances by mark."""

from collections import Counter

import pytest

from lab.roles import client, director

pytestmark = pytest.mark.ipvs


@pytest.mark.drlab(fwmark=1, extra_ports=(8080,))
def test_one_fwmark_service_balances_several_ports(dr_lab):
    replies = [client.connect(dr_lab, port=p) for p in (80, 8080) * 3]
    # one service for both ports: rr alternates across them
    assert Counter(r.server for r in replies) == {"rs1": 3, "rs2": 3}
    assert {r.peer for r in replies} == {("192.0.2.100", 80), ("192.0.2.100", 8080)}
    svc = director.read_service(dr_lab)
    assert (svc.fwmark, svc.port) == (1, 0)
    assert sorted(d.forwarding for d in svc.dests) == ["dr", "dr"]
    assert "FWM  1 rr" in director.ipvsadm(dr_lab, "-Ln")

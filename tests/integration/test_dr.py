"""End-to-end DR through a real IPVS director (runs in the VM on hosts without IPVS)."""

from collections import Counter

import pytest

from lab.probes.counters import counter
from lab.roles import client, director
from lab.util import wait_for

pytestmark = pytest.mark.ipvs


ROUTER = pytest.mark.parametrize("dr_topology", [{}, {"behind_router": True}], indirect=True,
                                 ids=["lan", "router"])


@ROUTER
def test_rr_splits_connections_evenly_and_client_only_sees_the_vip(dr_lab):
    n = 10
    replies = [client.connect(dr_lab) for _ in range(n)]
    assert Counter(r.server for r in replies) == {"rs1": n // 2, "rs2": n // 2}
    vip = dr_lab.topology.service.vip
    rips = {dr_lab.topology.primary_ip(h) for h in ("rs1", "rs2")}
    for r in replies:
        assert r.peer == (vip, 80)
        assert r.peer[0] not in rips
        assert r.server_local == (vip, 80)  # the real server accepted on its lo VIP
        assert r.server_saw_client == r.local  # no NAT anywhere: DR keeps the client address


@ROUTER
def test_ipvs_readback_equals_configuration_and_counters_rise(dr_lab):
    t = dr_lab.topology
    svc = director.read_service(dr_lab)
    assert (svc.protocol, svc.vip, svc.port, svc.scheduler, svc.persistence) == (
        "tcp", "192.0.2.100", 80, "rr", None)
    assert sorted((d.addr, d.port, d.forwarding, d.weight) for d in svc.dests) == [
        (t.primary_ip(rs.host), 80, "dr", rs.weight) for rs in t.service.real_servers]
    assert svc.stats.conns == 0

    for _ in range(4):
        client.connect(dr_lab)
    # the kernel folds per-CPU counters into the totals every 2 s: poll
    after = wait_for(lambda: (s := director.read_service(dr_lab)).stats.conns >= 4 and s,
                     timeout=6, what="IPVS counters to reach 4 connections")
    assert after.stats.conns == 4
    assert after.stats.inpkts > 0
    assert after.stats.outpkts == 0  # DR: replies never pass the director
    assert [d.stats.conns for d in after.dests] == [2, 2]  # rr: 2 each
    conns = director.read_connections(dr_lab)
    assert len(conns) == 4
    assert {c.dest for c in conns} == {"192.0.2.101", "192.0.2.102"}
    cip = t.primary_ip("client")
    assert all(c.vip == "192.0.2.100" and c.client == cip for c in conns)
    # the ipvsadm view agrees with netlink
    text = director.ipvsadm(dr_lab, "-Ln")
    assert "TCP  192.0.2.100:80 rr" in text
    assert "192.0.2.101:80" in text and "Route" in text


@pytest.mark.drlab(rs=3, scheduler="wrr", weights={"rs1": 3, "rs2": 1, "rs3": 0})
def test_wrr_follows_weights_and_weight_zero_gets_nothing(dr_lab):
    replies = [client.connect(dr_lab) for _ in range(8)]
    assert Counter(r.server for r in replies) == {"rs1": 6, "rs2": 2}
    assert director.read_service(dr_lab).dest("192.0.2.103").weight == 0


@pytest.mark.parametrize("dr_topology", [{"rs_without_vip": ("rs2",)},
                                         {"rs_without_vip": ("rs2",), "behind_router": True}],
                         indirect=True, ids=["lan", "router"])
def test_real_server_without_vip_drops_requests_quickly(dr_lab):
    """rr sends one of two connections to rs2, which has no VIP on lo: it drops the
    SYN (Ip.InAddrErrors rises) and never answers. Decided by the counter, not by a
    long connect timeout."""
    before = counter(dr_lab, "rs2", "Ip.InAddrErrors")
    socks = [client.start_connect(dr_lab) for _ in range(2)]
    try:
        wait_for(lambda: counter(dr_lab, "rs2", "Ip.InAddrErrors") > before, timeout=5,
                 what="rs2 to drop a request for the VIP")
        wait_for(lambda: sum(client.connected(s) for s in socks) == 1, timeout=5,
                 what="rs1 to accept its connection")
        assert sum(client.connected(s) for s in socks) == 1
    finally:
        for s in socks:
            s.close()
    conns = director.read_connections(dr_lab)
    assert {c.dest for c in conns} == {"192.0.2.101", "192.0.2.102"}  # IPVS did schedule rs2


@pytest.mark.parametrize("dr_topology", [{"behind_router": True}], indirect=True)
def test_client_behind_router_reaches_vip(dr_lab):
    replies = [client.connect(dr_lab) for _ in range(4)]
    assert Counter(r.server for r in replies) == {"rs1": 2, "rs2": 2}
    assert all(r.peer == ("192.0.2.100", 80) and r.server_saw_client[0] == "198.51.100.10"
               for r in replies)

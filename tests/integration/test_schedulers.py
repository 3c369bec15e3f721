"""Schedulers: the distribution each should give, measured through the VIP."""

from collections import Counter

import pytest

from lab.roles import client, director

pytestmark = pytest.mark.ipvs


@pytest.mark.parametrize("dr_topology", [
    {"scheduler": "wrr", "weights": {"rs1": 3, "rs2": 1}},
    {"scheduler": "wrr", "weights": {"rs1": 3, "rs2": 1}, "behind_router": True}],
    indirect=True, ids=["lan", "router"])
def test_wrr_follows_the_weights(dr_lab):
    got = Counter(client.connect(dr_lab).server for _ in range(40))
    assert got == {"rs1": 30, "rs2": 10}  # wrr is exact over whole cycles


@pytest.mark.parametrize("scheduler", ["lc", "wlc"])
def test_least_connection_balances_held_connections(lab_factory, scheduler):
    from lab.model import default_dr

    lab = lab_factory(default_dr(scheduler=scheduler, weights={"rs1": 2, "rs2": 1}
                                 if scheduler == "wlc" else None))
    held = [client.open_connection(lab) for _ in range(6)]
    try:
        active = Counter(r.server for r, _ in held)
        if scheduler == "lc":
            assert active == {"rs1": 3, "rs2": 3}  # active connections, not turns
        else:
            assert active == {"rs1": 4, "rs2": 2}  # in proportion to the weights
        # close rs1's connections: new ones go to rs1 until it catches up
        for r, s in held:
            if r.server == "rs1":
                s.close()
        nxt = [client.open_connection(lab) for _ in range(2)]
        held += nxt
        assert {r.server for r, _ in nxt} == {"rs1"}
    finally:
        for _, s in held:
            s.close()


@pytest.mark.parametrize("router", [False, True], ids=["lan", "router"])
@pytest.mark.parametrize("scheduler", ["sh", "mh"])
def test_source_hashing_is_stable_per_client_address(lab_factory, scheduler, router):
    from lab.model import default_dr

    lab = lab_factory(default_dr(scheduler=scheduler, client_addresses=12,
                                 behind_router=router))
    sources = [a.ip for a in lab.topology.host("client").interfaces[0].addresses]
    first = {src: client.connect(lab, source=src).server for src in sources}
    again = {src: client.connect(lab, source=src).server for src in sources}
    assert first == again  # the same client address always lands on the same server
    assert set(first.values()) == {"rs1", "rs2"}  # and addresses spread over both
    assert director.read_service(lab).scheduler == scheduler

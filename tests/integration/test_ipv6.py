"""IPv6 DR: NDP census, end-to-end traffic and path proof, as for IPv4."""

from collections import Counter

import pytest

from lab.probes import path
from lab.probes.ndp import ndp_census
from lab.roles import client, director

pytestmark = pytest.mark.ipvs


@pytest.mark.parametrize("dr_topology", [{"ipv6": True}, {"ipv6": True, "behind_router": True}],
                         indirect=True, ids=["lan", "router"])
def test_ipv6_dr_end_to_end(dr_lab):
    vip = dr_lab.topology.service.vip
    assert vip == "2001:db8::100"
    hop = path.first_hop(dr_lab)
    # only the director answers: NDP answers for addresses on the receiving interface,
    # so the VIP on the real servers' lo needs no arp_ignore equivalent
    c = ndp_census(dr_lab, asker=hop)
    assert c.hosts == {"director"}, str(c)
    replies = [client.connect(dr_lab) for _ in range(4)]
    assert Counter(r.server for r in replies) == {"rs1": 2, "rs2": 2}
    assert all(r.peer == (vip, 80) and r.server_local == (vip, 80) for r in replies)
    svc = director.read_service(dr_lab)
    assert {d.addr for d in svc.dests} == {"2001:db8::101", "2001:db8::102"}
    proof = path.prove(dr_lab, connections=2)
    assert proof.ok, proof.ladder()

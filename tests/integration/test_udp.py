"""UDP DR services: distribution, replies from the VIP, and IPVS's UDP timeout."""

from collections import Counter

import pytest

from lab.builder import netns
from lab.roles import client, director
from lab.util import wait_for

pytestmark = pytest.mark.ipvs


@pytest.mark.parametrize("dr_topology", [{"protocol": "udp", "port": 53},
                                         {"protocol": "udp", "port": 53, "behind_router": True}],
                         indirect=True, ids=["lan", "router"])
def test_udp_rr_replies_from_the_vip(dr_lab):
    replies = [client.connect(dr_lab) for _ in range(6)]  # a new source port each time
    assert Counter(r.server for r in replies) == {"rs1": 3, "rs2": 3}
    assert all(r.peer == ("192.0.2.100", 53) for r in replies)
    assert all(r.server_local == ("192.0.2.100", 53) for r in replies)  # IP_PKTINFO: VIP
    svc = director.read_service(dr_lab)
    assert (svc.protocol, svc.port) == ("udp", 53)
    assert {d.forwarding for d in svc.dests} == {"dr"}


@pytest.mark.drlab(protocol="udp", port=53)
def test_udp_flow_sticks_until_the_udp_timeout(dr_lab):
    import socket

    director.ipvsadm(dr_lab, "--set", "0", "0", "2")  # tcp, tcpfin unchanged; udp 2 s
    s = netns.socket_in(dr_lab.ns("client"), socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("192.0.2.100", 53))
    s.settimeout(10)

    def ask() -> str:
        s.send(b"who\n")
        return s.recv(200).decode().split()[0]

    try:
        first = [ask() for _ in range(4)]
        assert len(set(first)) == 1  # one flow, one real server while the entry lives
        port = s.getsockname()[1]

        def expired() -> bool:
            return not [c for c in director.read_connections(dr_lab) if c.cport == port]
        wait_for(expired, timeout=10, what="the UDP entry to expire")
        # the same socket is now a new flow: rr schedules it to the other real server
        assert ask() != first[0]
    finally:
        s.close()

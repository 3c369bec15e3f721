"""Two directors for one VIP: an established connection across a failover.

The VIP moves from the active director to the standby with a gratuitous ARP (as
keepalived does). Without help the standby has never seen the connection: its
next packet hits the standby's own stack and is reset. Connection sync
(``ipvsadm --start-daemon``) or sloppy_tcp (with one real server) keep it alive.
"""

import pytest

from lab.builder import sysctl
from lab.model import Address, Host, Interface, default_dr
from lab.probes import arp
from lab.roles import client, director
from lab.util import scaled, wait_for

pytestmark = pytest.mark.ipvs


def two_directors(rs: int):
    t = default_dr(rs=rs)
    t.hosts.insert(2, Host("director2", "director",
                           [Interface("eth0", "lan", [Address("192.0.2.3/24")])]))
    return t


def still_answers(sock) -> bool:
    sock.settimeout(scaled(2))
    try:
        sock.sendall(b"after failover\n")
        return sock.recv(100) == b"after failover\n"
    except OSError:  # reset, or no answer in time
        return False


@pytest.mark.parametrize("mode", ["plain", "sloppy", "sync"])
def test_established_connection_across_failover(lab_factory, mode):
    lab = lab_factory(two_directors(rs=1 if mode == "sloppy" else 2))
    director.configure(lab, host="director2")  # the standby has the same table
    if mode == "sloppy":
        sysctl.write(lab.ns("director2"), [("net.ipv4.vs.sloppy_tcp", "1")])
    if mode == "sync":
        director.ipvsadm(lab, "--start-daemon", "master", "--mcast-interface", "eth0",
                         "--syncid", "7")
        director.ipvsadm(lab, "--start-daemon", "backup", "--mcast-interface", "eth0",
                         "--syncid", "7", host="director2")
    reply, sock = client.open_connection(lab)
    try:
        sock.sendall(b"before\n")
        assert sock.recv(100) == b"before\n"
        port = reply.local[1]
        if mode == "sync":
            wait_for(lambda: [c for c in director.read_connections(lab, "director2")
                              if c.cport == port], timeout=10,
                     what="the standby to receive the synced connection")
        director.move_vip(lab, "director", "director2")
        wait_for(lambda: arp.resolves_to(lab, "client", "192.0.2.100") == "director2",
                 timeout=5, what="the client to follow the gratuitous ARP")
        alive = still_answers(sock)
    finally:
        sock.close()
    assert alive is (mode != "plain")
    # new connections go through the new director either way
    assert client.connect(lab).peer == ("192.0.2.100", 80)

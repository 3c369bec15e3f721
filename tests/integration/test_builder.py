"""The builder on the real kernel: namespaces, links, addresses, sysctls, cleanup.

No IPVS needed: these run on the host kernel and in the VM.
"""

import os
import signal
import socket
import subprocess
import threading

import pytest
from pyroute2 import IPRoute

from lab.builder import Lab, links, netns, ownership
from lab.builder import sysctl as sc
from lab.machine.hostcheck import diff, snapshot
from lab.model import default_dr
from lab.probes import state
from lab.roles import client, realserver
from lab.util import Timeout

pytestmark = pytest.mark.netns


def test_router_topology_is_built_as_modelled(lab_factory):
    t = default_dr(behind_router=True)
    lab = lab_factory(t, roles=False)
    for h in t.hosts:
        assert netns.exists(lab.ns(h.name))
        got = {s.name: s for s in state.interfaces(lab, h.name)}
        for i in h.interfaces:
            assert got[i.name].state == "UP"
            assert got[i.name].mac == lab.mac(h.name, i.name)
            assert sorted(got[i.name].addresses) == sorted(a.cidr for a in i.addresses)
        assert sorted(a for a in got["lo"].addresses if not a.startswith("127.")) == \
            sorted(a.cidr for a in h.lo)
    assert "default via 198.51.100.1" in state.routes(lab, "client")
    assert "default via 192.0.2.1" in state.routes(lab, "rs1")
    # `ip netns exec` works on the lab's namespaces (named like iproute2's)
    out = subprocess.run(["ip", "netns", "exec", lab.ns("rs1"), "ip", "-o", "addr", "show",
                          "dev", "lo"], capture_output=True, text=True, check=True).stdout
    assert "192.0.2.100/32" in out


def test_wait_up_follows_the_kernels_link_events(drlab_netns):
    """links.wait_up returns when the kernel says a link is UP (an event after its
    dump), and times out naming the links that never came up."""
    ipr = IPRoute(fileno=netns.socket_in(drlab_netns, socket.AF_NETLINK,
                                          socket.SOCK_DGRAM, 0).detach())
    try:
        ipr.link("add", ifname="a", kind="veth", state="up", peer={"ifname": "b"})
        with pytest.raises(Timeout, match=f"not up: {drlab_netns}/a, {drlab_netns}/b"):
            links.wait_up({drlab_netns: {"a", "b"}}, 0.3, "a and b")
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (
            links.wait_up({drlab_netns: {"a", "b"}}, 30, "a and b"), done.set()))
        waiter.start()
        assert not done.wait(0.2)  # b is down: a is not UP either (no carrier)
        with netns.socket_in(drlab_netns, socket.AF_INET, socket.SOCK_DGRAM) as s:
            links.set_up(s, "b", mtu=1400)
            assert links.index(s, "b") == ipr.link_lookup(ifname="b")[0]
        waiter.join(60)
        assert done.is_set()
        assert ipr.get_links(ifname="b")[0].get_attr("IFLA_MTU") == 1400
    finally:
        ipr.close()


def test_every_pinned_sysctl_is_written_and_overrides_win(lab_factory):
    t = default_dr(host_sysctls={"rs2": {"net.ipv4.conf.all.rp_filter": "2"}})
    lab = lab_factory(t, roles=False)
    for h in t.hosts:
        devs = ["all", "default", "lo", *(i.name for i in h.interfaces)]
        keys = [f"net.ipv4.conf.{d}.{k}" for d in devs for k in sc.PINNED_CONF]
        got = sc.read(lab.ns(h.name), keys)
        for k in keys:
            want = h.sysctls.get(k, sc.PINNED_CONF[k.rsplit(".", 1)[1]])
            if k.endswith(".forwarding") and h.sysctls.get("net.ipv4.conf.all.forwarding"):
                want = h.sysctls["net.ipv4.conf.all.forwarding"]
            assert got[k] == want, f"{h.name}: {k}"
    rs1 = sc.read(lab.ns("rs1"), ["net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.eth0.arp_ignore",
                                  "net.ipv4.conf.all.arp_announce"])
    assert sc.effective(rs1, "eth0", "arp_ignore") == 1
    assert rs1["net.ipv4.conf.all.arp_announce"] == "2"
    assert sc.read(lab.ns("rs2"), ["net.ipv4.conf.all.rp_filter"]) == {
        "net.ipv4.conf.all.rp_filter": "2"}


def test_hosts_talk_over_the_segment_without_ipvs(lab_factory):
    lab = lab_factory(default_dr(), roles=False)
    realserver.start_service(lab, "rs1")
    reply = client.connect(lab, addr="192.0.2.101")
    assert reply.server == "rs1"
    assert reply.peer == ("192.0.2.101", 80)
    assert reply.server_saw_client[0] == "192.0.2.10"


def test_sockets_made_inside_stay_inside(drlab_netns):
    s = netns.socket_in(drlab_netns, socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    # not reachable from the root namespace, which has its own loopback
    root = socket.socket()
    root.settimeout(2)
    assert root.connect_ex(("127.0.0.1", port)) != 0
    root.close()
    s.close()


def test_teardown_removes_namespaces_and_processes_and_host_is_unchanged():
    before = snapshot()
    lab = Lab(default_dr(rs=3)).build()
    pids = [realserver.start_service(lab, h) for h in ("rs1", "rs2", "rs3")]
    names = [*lab.namespaces.values(), *lab.segment_namespaces.values()]
    assert all(netns.exists(n) for n in names)
    lab.teardown()
    assert not any(netns.exists(n) for n in names)
    assert all(ownership.proc_start_time(p) is None for p in pids)
    assert not any(r.lab == lab.id for r in ownership.records())
    # other pytest-xdist workers may have labs up: their namespaces are theirs
    assert [d for d in diff(before, snapshot()) if not d.startswith(("netns", "drlab_records"))
            ] == []
    assert not [o for o in ownership.orphans() if lab.id in o]
    assert lab.teardown() == []  # idempotent


def test_failed_build_leaves_nothing(lab_factory):
    t = default_dr()
    t.host("rs1").sysctls["net.ipv4.conf.all.no_such_knob"] = "1"
    lab = Lab(t)
    with pytest.raises(OSError, match="no_such_knob"):
        lab.build()
    names = [*lab.namespaces.values(), *lab.segment_namespaces.values()]
    assert not any(netns.exists(n) for n in names)
    assert not any(r.lab == lab.id for r in ownership.records())
    assert not [o for o in ownership.orphans() if lab.id in o]


def test_killed_owner_is_reaped_and_live_labs_are_not():
    mine = Lab(default_dr(rs=1)).build()
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a run that dies by SIGKILL with a lab up and a server running
            try:
                os.close(r)
                lab = Lab(default_dr(rs=2)).build()
                realserver.start_service(lab, "rs1")
                os.write(w, lab.id.encode())
            finally:
                os.kill(os.getpid(), signal.SIGKILL)
        os.close(w)
        dead_id = os.read(r, 64).decode()
        os.close(r)
        os.waitpid(pid, 0)
        rec = next(x for x in ownership.records() if x.lab == dead_id)
        assert all(netns.exists(n) for n in rec.namespaces)
        server_pid = rec.pids[0][0]

        removed = ownership.reap()

        assert all(not netns.exists(n) for n in rec.namespaces)
        assert not any(x.lab == dead_id for x in ownership.records())
        assert ownership.proc_start_time(server_pid) is None
        assert f"netns drl-{dead_id}-rs1" in removed
        # our own live lab was not touched
        assert all(netns.exists(n) for n in mine.namespaces.values())
        assert not any(mine.id in x for x in removed)
    finally:
        mine.teardown()


@pytest.mark.parametrize("meanwhile", ["built", "torn down"])
def test_orphans_does_not_report_a_lab_built_or_torn_down_while_it_looks(meanwhile, monkeypatch):
    """Another worker builds (record, then namespaces) or tears down (namespaces, then
    record) a lab between orphans()'s two reads, whichever it makes first: that lab
    is not a leftover."""
    from lab.model import Host, Topology

    topology = Topology("one", [Host("h", "client")], [])
    other = Lab(topology) if meanwhile == "built" else Lab(topology).build()
    real_listing, real_records = netns.listing, ownership.records
    done = []

    def between(read):
        def wrapped():
            out = read()
            if not done:  # after orphans()'s first read, before its second
                done.append(other.build() if meanwhile == "built" else other.teardown())
            return out
        return wrapped

    monkeypatch.setattr(netns, "listing", between(real_listing))
    monkeypatch.setattr(ownership, "records", between(real_records))
    try:
        found = [o for o in ownership.orphans() if other.id in o]
        assert done, "orphans() read nothing"
        assert found == []
    finally:
        other.teardown()

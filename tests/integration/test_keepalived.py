"""keepalived as it runs in production, in the lab: VRRP for the VIP, its own
virtual_server in IPVS, health checks, connection sync, failover and failback.

Every assertion is on what the kernel and the wire show (the VIP on an
interface, the ARP census, gratuitous ARPs captured on the client's segment,
the client's neighbour entry, IPVS read over netlink, real connections);
keepalived's own report is checked only as what `drlab status` shows next to it.
"""

from collections import Counter
from pathlib import Path

import pytest

from lab.probes import vrrp
from lab.probes.labcheck import check
from lab.roles import client, director, keepalived, realserver
from lab.util import wait_for

pytestmark = pytest.mark.ipvs
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "keepalived"


def test_one_director_holds_the_vip_answers_arp_and_routes(keepalived_lab):
    lab = keepalived_lab
    h = vrrp.holding(lab)
    assert h.holders == ["director"], h.lines()
    assert h.arp_answerers == ["director"], h.lines()
    svc = director.read_service(lab)
    assert [d.forwarding for d in svc.dests] == ["dr", "dr"]
    assert set(h.ipvs["director"]) == {"rs1", "rs2"}
    assert keepalived.state(lab, "director") == {"VI_1": "MASTER"}
    assert keepalived.state(lab, "director2") == {"VI_1": "BACKUP"}
    replies = [client.connect(lab) for _ in range(4)]
    assert Counter(r.server for r in replies) == {"rs1": 2, "rs2": 2}
    assert all(r.peer == ("192.0.2.100", 80) for r in replies)
    assert check(lab).ok, check(lab).text()  # what `drlab check` runs


def test_health_check_takes_a_stopped_server_out_and_back(keepalived_lab, record_property):
    lab = keepalived_lab
    [pid] = realserver.service_pids(lab, "rs1")
    hc = vrrp.health_check(lab, "rs1", pid)
    record_property("health_out_s", hc.seconds_out)
    record_property("health_in_s", hc.seconds_in)
    print("\n".join(hc.evidence))
    assert hc.seconds_out is not None, hc.evidence
    assert set(hc.while_out) == {"rs2"}, hc.evidence
    assert hc.seconds_in is not None, hc.evidence
    assert {client.connect(lab).server for _ in range(4)} == {"rs1", "rs2"}


@pytest.mark.parametrize("fault", ["link", "stop"])
def test_failover_with_sync_keeps_the_established_connection(keepalived_lab, fault,
                                                             record_property):
    r = vrrp.failover(keepalived_lab, fault, sync_wait=True)
    record_property("failover_s", r.seconds_to_connection)
    print("\n".join(r.evidence))
    assert (r.old, r.new) == ("director", "director2"), r.evidence
    assert r.garps >= 1, r.evidence
    assert r.client_entry == "director2", r.evidence
    assert r.established == "answers", r.evidence
    assert vrrp.holders(keepalived_lab) == ["director2"]
    result = check(keepalived_lab)  # `drlab check` follows the VIP to its holder
    assert result.ok and result.director == "director2", result.text()


@pytest.mark.keepalived(sync=False)
def test_failover_without_sync_resets_the_established_connection(keepalived_lab):
    r = vrrp.failover(keepalived_lab, "stop")
    assert r.new == "director2" and r.client_entry == "director2", r.evidence
    assert r.established == "reset", r.evidence


@pytest.mark.parametrize("keepalived_topology", [{"preempt": True}, {"preempt": False}],
                         ids=["preempt", "nopreempt"], indirect=True)
def test_failback(keepalived_lab, keepalived_topology):
    lab = keepalived_lab
    preempt = "nopreempt" not in lab.topology.keepalived["director"]
    r = vrrp.failover(lab, "link")
    assert r.new == "director2", r.evidence
    vrrp.restore(lab, "director", "link")
    if preempt:  # the returning master takes the VIP back
        assert vrrp.wait_holder(lab, not_="director2") == "director"
    else:  # it hears director2's adverts and stays backup: the VIP does not move
        keepalived.wait_state(lab, "director", "BACKUP")
        wait_for(lambda: keepalived.state(lab, "director2") == {"VI_1": "MASTER"}, 10,
                 "director2 to stay master")
        assert vrrp.holders(lab) == ["director2"]
    assert client.connect(lab).peer == ("192.0.2.100", 80)


@pytest.mark.keepalived(files=[EXAMPLES / "master.conf", EXAMPLES / "backup.conf"])
def test_users_files_wrr_3_to_1(keepalived_lab):
    lab = keepalived_lab
    svc = director.read_service(lab)
    assert svc.scheduler == "wrr"
    assert {d.addr: (d.weight, d.forwarding) for d in svc.dests} == {
        "192.0.2.101": (3, "dr"), "192.0.2.102": (1, "dr")}
    got = Counter(client.connect(lab).server for _ in range(8))
    assert got == {"rs1": 6, "rs2": 2}


@pytest.mark.subprocess
def test_drlab_up_keepalived_then_down_leaves_nothing(drlab_ipvs):
    import os
    import subprocess

    from lab.builder import ownership

    name = f"ka{os.getpid() % 10000}"

    from cli_runner import run as drlab

    up = drlab("up", "--name", name, "--keepalived")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "VIP held by director; ARP answered by director" in up.stdout
        st = drlab("status", name)
        assert st.returncode == 0 and "keepalived says VI_1 MASTER" in st.stdout, st.stdout
    finally:
        down = drlab("down", name)
    assert down.returncode == 0, down.stderr
    # this lab's keepalived (under pytest-xdist other workers' labs run their own)
    left = subprocess.run(["pgrep", "-a", "-x", "keepalived"], capture_output=True, text=True)
    assert [x for x in left.stdout.splitlines() if f"/labs/{name}.d/" in x] == []
    assert ownership.orphans() == []
    assert not any(n.startswith(f"drl-{name}-") for n in os.listdir("/run/netns"))

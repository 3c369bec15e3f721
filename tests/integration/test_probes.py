"""Probes on a real DR lab: ARP census, announce and poisoning, path proof, artifacts."""


import pytest

from lab.probes import arp, path
from lab.roles import client

pytestmark = pytest.mark.ipvs

IGNORE0 = {"net.ipv4.conf.all.arp_ignore": 0, "net.ipv4.conf.eth0.arp_ignore": 0}
ANNOUNCE0 = {"net.ipv4.conf.all.arp_announce": 0, "net.ipv4.conf.eth0.arp_announce": 0}


@pytest.mark.parametrize("dr_topology", [{}, {"behind_router": True}], indirect=True,
                         ids=["lan", "router"])
def test_default_lab_census_announce_neighbours_and_path(dr_lab):
    t = dr_lab.topology
    hop = path.first_hop(dr_lab)  # the client, or the router in front of it
    c = arp.census(dr_lab, asker=hop)
    assert c.hosts == {"director"}, str(c)
    for rs in ("rs1", "rs2"):
        ann = arp.announcements(dr_lab, rs)
        assert ann.requests, f"{rs} sent no ARP request"
        assert ann.senders == {t.primary_ip(rs)}  # "tell RIP", never the VIP
    assert arp.resolves_to(dr_lab, hop, t.service.vip) == "director"
    proof = path.prove(dr_lab, connections=4)
    assert proof.ok, proof.ladder()
    assert {c.server for c in proof.connections} == {"rs1", "rs2"}
    assert "served by rs1 ok" in proof.ladder()


@pytest.mark.drlab(host_sysctls={"rs1": IGNORE0})
def test_arp_ignore_0_real_server_answers_for_the_vip(dr_lab):
    c = arp.census(dr_lab)
    assert c.hosts == {"director", "rs1"}, str(c)  # both answer; never assert a winner


@pytest.mark.parametrize("dr_topology", [
    {"host_sysctls": {"rs1": ANNOUNCE0}},
    {"host_sysctls": {"rs1": ANNOUNCE0}, "behind_router": True}], indirect=True,
    ids=["client", "router"])
def test_arp_announce_0_poisons_the_first_hop(dr_lab):
    t = dr_lab.topology
    hop = path.first_hop(dr_lab)
    client.connect(dr_lab)  # the first hop resolves the VIP to the director
    assert arp.resolves_to(dr_lab, hop, t.service.vip) == "director"
    assert t.service.vip in arp.announcements(dr_lab, "rs1").senders  # "tell VIP"
    assert arp.resolves_to(dr_lab, hop, t.service.vip) == "rs1"
    # later connections skip the director: rs1 serves all of them
    assert {client.connect(dr_lab).server for _ in range(4)} == {"rs1"}


@pytest.mark.drlab(rs_sysctls={**{k: 0 for k in IGNORE0 | ANNOUNCE0},
                               "net.ipv4.conf.lo.arp_ignore": 1,
                               "net.ipv4.conf.lo.arp_announce": 2})
def test_settings_only_on_lo_behave_like_kernel_defaults(dr_lab):
    assert arp.census(dr_lab).hosts == {"director", "rs1", "rs2"}
    # the client may now send straight to whichever real server won the ARP
    # race: whoever serves, it announces the VIP
    ann = arp.announcements(dr_lab)
    assert dr_lab.topology.service.vip in ann.senders, ann.server


FAILING = '''
import json
import os

from lab.model import default_dr
from lab.probes import path
from lab.roles import client


def test_fails(lab_factory):
    lab = lab_factory(default_dr())
    proof = path.prove(lab, connections=2)
    assert not proof.ok, "deliberate failure"


def test_dr_lab_fails(dr_lab):
    r = client.connect(dr_lab)
    with open(os.environ["DRLAB_OUT"], "w") as f:
        json.dump({"lab": dr_lab.id, "server": r.server, "port": r.local[1],
                   "macs": {h: dr_lab.mac(h) for h in ("client", "director", "rs1", "rs2")}}, f)
    assert r.server == "nobody", "deliberate failure"
'''


@pytest.mark.subprocess
def test_failing_test_leaves_pcaps_and_state_dump(drlab_ipvs, tmp_path):
    import json

    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import ARP
    from scapy.utils import rdpcap

    (tmp_path / "test_fail.py").write_text(FAILING)
    art = tmp_path / "art"
    out = tmp_path / "dr_lab.json"
    from cli_runner import run

    p = run("-q", "-p", "no:cacheprovider", "--no-host-check", f"--drlab-artifacts={art}",
            "test_fail.py", module="pytest", cwd=tmp_path, env={"DRLAB_OUT": str(out)})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "2 failed" in p.stdout, p.stdout
    assert "drlab artifacts" in p.stdout and str(art) in p.stdout
    assert "DR path ladder:" in p.stdout and "served by rs1 ok" in p.stdout
    # the test's own captures (path.prove) are kept as they were
    fails = art / "test_fail.py__test_fails"
    explicit = {x.name.split("-", 1)[1] for x in fails.glob("*-capture*.pcap")}
    assert explicit >= {"director-eth0-capture1.pcap", "rs1-eth0-capture1.pcap"}, explicit
    dump = next(fails.glob("state-*.txt")).read_text()
    for needle in ("== rs1 (realserver)", "neighbours:", "sysctl eth0: arp_ignore=1",
                   "== IPVS (ipvsadm -Ln --stats", "/proc/net/ip_vs_conn", "192.0.2.100/32"):
        assert needle in dump, needle

    # a dr_lab test that captured nothing itself: one pcap per lab interface, listed
    seen = json.loads(out.read_text())
    lab, served = seen["lab"], seen["server"]
    hosts = ("client", "director", "rs1", "rs2")
    names = [f"{lab}-{h}-eth0.pcap" for h in hosts]
    d = art / "test_fail.py__test_dr_lab_fails"
    assert sorted(x.name for x in d.glob("*.pcap")) == sorted(names)
    for n in names:
        assert n in p.stdout, p.stdout
    pk = {h: rdpcap(str(d / n)) for h, n in zip(hosts, names, strict=True)}
    mac = seen["macs"]
    vip, port = "192.0.2.100", seen["port"]

    def syns(h):
        return [x for x in pk[h] if TCP in x and x[TCP].flags == "S" and x[IP].dst == vip
                and x[TCP].dport == 80 and x[TCP].sport == port]

    # the client resolved the VIP to the director, sent the SYN to the director's
    # MAC; the director forwarded it to the serving real server's MAC, VIP unchanged
    assert any(ARP in x and x[ARP].op == 1 and x[ARP].pdst == vip for x in pk["client"])
    assert {x.dst for x in syns("client")} == {mac["director"]}
    assert {x.dst for x in syns("director")} == {mac["director"], mac[served]}
    assert {x.dst for x in syns(served)} == {mac[served]}
    other = "rs2" if served == "rs1" else "rs1"
    assert not syns(other)
    # the reply went from the real server to the client directly, from the VIP
    synack = [x for x in pk["client"] if TCP in x and x[TCP].flags == "SA"
              and x[IP].src == vip and x[TCP].dport == port]
    assert synack and {x.src for x in synack} == {mac[served]}
    assert not any(TCP in x and x[IP].src == vip for x in pk["director"])

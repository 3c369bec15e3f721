"""The operator's path on examples/cluster/: collected files -> drlab import ->
drlab diagnose -> drlab validate --topology, for real."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import cli_runner
import pytest

from lab.model import load_topology, topology_from_dict
from lab.model.collected import import_cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "cluster" / "collected"


def drlab(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return cli_runner.run(*args, timeout=timeout)


def test_import_the_example_cluster(tmp_path):
    out = tmp_path / "cluster.toml"
    p = drlab("import", str(EXAMPLE), "-o", str(out), "--name", "example")
    assert p.returncode == 0, p.stderr
    t = load_topology(out)
    assert {h.shown: h.role for h in t.hosts} == {
        "(lab client)": "client", "lvs1.example.net": "director",
        "web1.example.net": "realserver", "web2.example.net": "realserver",
        "web3.example.net": "realserver"}
    assert [(s.key, s.scheduler, s.persistence, [(r.host, r.weight) for r in s.real_servers])
            for s in t.services] == [
        ("192.0.2.100:80/tcp", "wlc", 300, [("web1", 1), ("web2", 1), ("web3", 2)]),
        ("192.0.2.53:53/udp", "rr", None, [("web1", 1), ("web2", 1)])]
    web3 = t.host("web3")
    assert web3.sysctls["net.ipv4.conf.lo.arp_ignore"] == "1"
    assert web3.sysctls["net.ipv4.conf.eth0.arp_ignore"] == "0"
    assert [a.cidr for a in web3.lo] == ["192.0.2.100/32"]
    assert "5 hosts (client, lvs1, web1, web2, web3), 2 services" in p.stderr


def test_import_anonymized_leaks_no_collected_name(tmp_path):
    out = tmp_path / "anon.toml"
    p = drlab("import", str(EXAMPLE), "-o", str(out), "--anonymize")
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "example.net" not in text and str(EXAMPLE) not in text
    t = topology_from_dict(tomllib.loads(text))
    assert len(t.services) == 2 and len(t.hosts) == 5


@pytest.mark.parametrize("breakage, where", [
    (lambda d: (d / "web2.example.net" / "ip-addr.json").write_text('[{"ifname": "lo",\n  oops'),
     r"web2\.example\.net/ip-addr\.json:2"),
    (lambda d: (d / "lvs1.example.net" / "ipvsadm-save.txt").write_text(
        "-A -t 192.0.2.100:80 -s wlc\n-a -t 192.0.2.100:80 --frobnicate\n"),
     r"lvs1\.example\.net/ipvsadm-save\.txt:2"),
    (lambda d: (d / "web1.example.net" / "ip-addr.json").unlink(),
     r"web1\.example\.net"),
])
def test_bad_collected_input_is_one_line_naming_the_file(tmp_path, breakage, where):
    d = tmp_path / "c"
    shutil.copytree(EXAMPLE, d)
    breakage(d)
    p = drlab("import", str(d), "-o", str(tmp_path / "x.toml"))
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert re.search(where, p.stderr), p.stderr
    assert not (tmp_path / "x.toml").exists()


@pytest.mark.ipvs
def test_diagnose_and_validate_the_example(drlab_ipvs, tmp_path):
    """docs/cluster.md's walk-through: one finding (web3's sysctls on lo only), measured;
    the proposed fix on web3 fixes it and breaks nothing."""
    from lab.scenarios.base import Change
    from lab.scenarios.diagnose import diagnose
    from lab.scenarios.validate import validate_twin

    t = import_cluster([EXAMPLE], name="example").topology
    d = diagnose(t)
    assert [(f.name, f.hosts, f.service, f.measured) for f in d.findings] == [
        ("sysctls-on-lo-only", ["web3.example.net"], "192.0.2.100:80/tcp", True)], d.text()
    assert {s.service: s.census for s in d.services} == {
        "192.0.2.100:80/tcp": ["lvs1", "web3"], "192.0.2.53:53/udp": ["lvs1"]}
    v = validate_twin(t, Change({"net.ipv4.conf.all.arp_ignore": "1",
                                 "net.ipv4.conf.all.arp_announce": "2"},
                                hosts=("web3.example.net",)))
    assert [f.name for f in v.fixes] == ["sysctls-on-lo-only"] and v.breaks == [], v.text()
    assert v.after.ok


@pytest.mark.ipvs
@pytest.mark.subprocess
def test_drlab_diagnose_json_and_html(drlab_ipvs, tmp_path):
    page = tmp_path / "d.html"
    p = drlab("diagnose", str(EXAMPLE), "--json", "--html", str(page), "--service",
              "192.0.2.100:80")
    assert p.returncode == 1, p.stderr
    data = json.loads(p.stdout)
    assert data["ok"] is False and [s["service"] for s in data["services"]] == [
        "192.0.2.100:80/tcp"]
    [f] = data["findings"]
    assert set(f) >= {"name", "hosts", "symptom", "evidence", "fix"}
    assert (f["name"], f["hosts"]) == ("sysctls-on-lo-only", ["web3.example.net"])
    html = page.read_text()
    assert "sysctls-on-lo-only" in html and "web3.example.net" in html


def _two_faults():
    """rs2 has its ARP knobs on lo only (it answers who-has for both VIPs, and draws
    the client's connections); rs3, a real server of the first service, holds no VIP."""
    from lab.model import Address, RealServer, VirtualService, default_dr

    t = default_dr(rs=3, rs_without_vip=("rs3",), persistence=300, host_sysctls={"rs2": {
        "net.ipv4.conf.all.arp_ignore": 0, "net.ipv4.conf.eth0.arp_ignore": 0,
        "net.ipv4.conf.all.arp_announce": 0, "net.ipv4.conf.eth0.arp_announce": 0,
        "net.ipv4.conf.lo.arp_ignore": 1, "net.ipv4.conf.lo.arp_announce": 2}})
    vip2 = "192.0.2.200"
    t.host("director").interfaces[0].addresses.append(Address(f"{vip2}/32"))
    for rs in ("rs1", "rs2"):
        t.host(rs).lo.append(Address(f"{vip2}/32"))
    t.services.append(VirtualService(vip2, 443, "director", [RealServer("rs1"),
                                                              RealServer("rs2")]))
    return t


@pytest.mark.ipvs
def test_diagnose_finds_a_fault_another_one_hides_each_once(drlab_ipvs):
    """#26: rs2's ARP answers draw every connection, so none is scheduled to rs3; the
    pass through the director (client's VIP entry pinned) still finds rs3's."""
    from lab.scenarios.diagnose import diagnose

    t = _two_faults()
    d = diagnose(t)
    got = sorted((f.name, f.hosts, f.service, f.measured) for f in d.findings)
    assert got == [
        ("missing-vip-on-rs", ["rs3"], "192.0.2.100:80/tcp", True),
        ("sysctls-on-lo-only", ["rs2"], "192.0.2.100:80/tcp, 192.0.2.200:443/tcp", True),
    ], d.text()
    from lab.scenarios.diagnose import RsStatus  # (after: the old code lacks it)

    status = {(s.service, c.host): c.status for s in d.services for c in s.real_servers}
    assert status == {
        ("192.0.2.100:80/tcp", "rs1"): RsStatus.VERIFIED,
        ("192.0.2.100:80/tcp", "rs2"): RsStatus.VERIFIED,
        ("192.0.2.100:80/tcp", "rs3"): RsStatus.FAILED,
        ("192.0.2.200:443/tcp", "rs1"): RsStatus.VERIFIED,
        ("192.0.2.200:443/tcp", "rs2"): RsStatus.VERIFIED}, d.text()


@pytest.mark.ipvs
def test_the_pass_through_the_director_restores_its_table_and_unpins(drlab_ipvs, lab_factory):
    from lab.model import default_dr
    from lab.probes import arp
    from lab.roles import director
    from lab.scenarios.diagnose import RsStatus, through_director

    lab = lab_factory(default_dr(rs=3, persistence=300, weights={"rs3": 0}))
    before = director.ipvsadm(lab, "-S", "-n")
    checks = through_director(lab, lab.topology.service, "director", lambda _m: None)
    assert [(c.host, c.status) for c in checks] == [
        ("rs1", RsStatus.VERIFIED), ("rs2", RsStatus.VERIFIED), ("rs3", RsStatus.NOT_VERIFIED)]
    assert director.ipvsadm(lab, "-S", "-n") == before
    assert arp.resolves_to(lab, "client", lab.topology.service.vip) is None

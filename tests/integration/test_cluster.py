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

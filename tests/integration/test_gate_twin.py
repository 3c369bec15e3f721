"""drlab gate on examples/gate/ and examples/cluster/, for real (IPVS: in the VM):
a sysctl change that breaks DR fails with the host, the finding and the scenario
named and one JUnit failure per added finding; a harmless (masked) one passes and
says it is masked; one that fixes a finding is a fix; a keepalived reload under
load counts what it drops. Bad input: one line, exit 2, nothing written (no IPVS
needed)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cli_runner
import pytest

from lab.model import load_topology
from lab.model.collected import import_cluster
from lab.model.gate import apply_changes, read_gate_file, read_manifest
from lab.scenarios.gate import Verdict, gate, reload_under_load

REPO = Path(__file__).resolve().parents[2]
GATE = REPO / "examples" / "gate"
CHANGES = GATE / "changes"


def drlab(*args: str) -> object:
    return cli_runner.run(*args, timeout=1500)


@pytest.mark.parametrize("args,want", [
    (["--apply", "web9=x.conf"], "x.conf: no such file"),
    (["--apply", f"nosuchhost={GATE}/roles/realserver/sysctl.d/90-lvs-dr.conf"],
     "'nosuchhost': no role"),
    (["--apply", f"web1={GATE}/roles/director/keepalived-lvsa.conf"], "for directors"),
    (["--apply", f"web1={CHANGES}/safe/drlab-gate.toml"], "neither a sysctl.d"),
    (["--apply", f"web1={GATE}/cluster.toml"], "cluster.toml:62"),
    (["--reload-budget", "-1", "--apply", "a=b"], "--reload-budget"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, want):
    out = tmp_path / "g.xml"
    p = drlab("gate", "--topology", str(GATE / "cluster.toml"), "--junit", str(out), *args)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1, p.stderr
    assert want in p.stderr and not out.exists()


@pytest.mark.ipvs
@pytest.mark.subprocess
def test_breaking_sysctl_change_fails_naming_host_finding_scenario(drlab_ipvs, tmp_path):
    """arp_ignore back to 0 on the web2 class: exit 1, rs-answers-arp on web2.
    Run as ``--kernel host``: through the kernel matrix's dispatch (kmatrix.run_all,
    the child ``drlab gate`` writing its reports beside its result), on the running
    kernel, so no second VM; the JUnit testsuite is the child's, named by kernel."""
    xml, md = tmp_path / "g.xml", tmp_path / "g.md"
    p = drlab("gate", "--manifest", str(CHANGES / "breaks-arp" / "drlab-gate.toml"),
              "--kernel", "host", "--junit", str(xml), "--markdown", str(md))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "rs-answers-arp on web2" in p.stderr, p.stderr  # the child's, prefixed [host]
    assert "drlab gate on 1 kernel(s): FAIL" in p.stdout and "host (" in p.stdout, p.stdout
    root = ET.parse(xml).getroot()
    assert len(root) == 1
    suite = root[0]
    assert suite.get("name").endswith(" on host")
    props = {x.get("name"): x.get("value") for x in suite.iter("property")}
    assert props["kernel.name"] == "host" and props["kernel.release"], props
    failed = [c for c in suite.iter("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed if ".finding" in c.get("classname")] == [
        "rs-answers-arp on web2 [192.0.2.100:80/tcp]"]
    assert int(suite.get("failures")) == len(failed)
    assert int(root.get("failures")) == len(failed)
    text = md.read_text()
    assert "\u274c added | `rs-answers-arp`" in text and "| host | `" in text


@pytest.mark.ipvs
def test_masked_change_passes_and_says_so(drlab_ipvs):
    m = read_manifest(CHANGES / "safe" / "drlab-gate.toml")
    assert m.topology is not None
    t = load_topology(m.topology)
    r = gate(t, apply_changes(t, m.applies), ["drlab", "gate"])
    assert r.verdict is Verdict.PASS and not r.breaks and not r.lost, r.text()
    assert any("arp_announce=0 changes nothing" in x for x in r.masked), r.masked


@pytest.mark.ipvs
def test_fixing_change_is_a_fix(drlab_ipvs, tmp_path):
    """examples/cluster/: web3 has its ARP knobs on lo only; the sysctl.d file that
    sets them on all fixes it."""
    t = import_cluster([REPO / "examples" / "cluster" / "collected"], name="example").topology
    f = tmp_path / "90-lvs-dr.conf"
    f.write_text("net.ipv4.conf.all.arp_ignore = 1\nnet.ipv4.conf.all.arp_announce = 2\n")
    r = gate(t, apply_changes(t, [("web3*", read_gate_file(f))]), ["drlab", "gate"])
    assert r.verdict is Verdict.FIXED and [f.name for f in r.fixes] == [
        "sysctls-on-lo-only"], r.text()


@pytest.mark.ipvs
def test_keepalived_reload_under_load_counts(drlab_ipvs):
    """lvsa's priority lowered below lvsb's and reloaded with SIGHUP under load: the
    reload is fenced by keepalived's own log, lvsb preempts (the VIP holder changes),
    every real server is in the table after; what dropped is counted."""
    m = read_manifest(CHANGES / "reload-failover" / "drlab-gate.toml")
    assert m.topology is not None
    t = load_topology(m.topology)
    a = apply_changes(t, m.applies)
    assert a.keepalived == ["lvsa"]
    res = reload_under_load(t, a.topology, ["lvsa"])
    print(json.dumps(res.to_json()))
    assert res.log and not res.errors, res
    assert res.before >= 2 and res.during > 0 and res.after > 0, res
    assert res.holder_changes >= 1, res.text()
    assert not res.out_after, res.text()

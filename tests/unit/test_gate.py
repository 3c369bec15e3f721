"""drlab gate's verdict and reports, on diagnoses made by hand (no twin, no root): a
finding the change adds fails it, one it removes is a fix, lost connections and a
reload over budget fail it; the JUnit XML has the shape test reporters read
(testsuites/testsuite/testcase/failure) and one failure per added finding."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET

import pytest

from lab.model import default_dr
from lab.model.gate import Applied
from lab.report.gate import html, junit, markdown
from lab.scenarios.catalogue import REGISTRY
from lab.scenarios.diagnose import Diagnosis, Finding, ServiceResult
from lab.scenarios.gate import GateResult, ReloadResult, Verdict
from lab.scenarios.validate import finding_key

SVC = "192.0.2.100:80/tcp"


def finding(name: str, host: str = "rs1", measured: bool = True) -> Finding:
    s = REGISTRY[name]
    return Finding(s, [host], SVC, s.symptom, [f"{host} <answered> | who-has"], s.fix, measured)


def diag(findings: list[Finding], ok: int = 4, of: int = 4) -> Diagnosis:
    d = Diagnosis("cluster", "6.1.0", default_dr())
    d.services.append(ServiceResult(SVC, "director", ["director"], of,
                                    [f"failed {i}" for i in range(of - ok)], {}, None, []))
    d.findings = findings
    return d


def result(before: Diagnosis, after: Diagnosis, reload: ReloadResult | None = None,
           budget: int = 0) -> GateResult:
    a = Applied(copy.deepcopy(default_dr()), sysctls={"rs1": {
        "net.ipv4.conf.all.arp_ignore": "0"}})
    return GateResult("cluster", "6.1.0", a, before, after,
                      ["drlab", "gate", "--topology", "c.toml", "--apply", "rs1=90.conf"],
                      budget, reload)


def test_added_finding_fails_removed_is_fixed_same_passes():
    arp = finding("rs-answers-arp")
    r = result(diag([]), diag([arp]))
    assert r.verdict is Verdict.FAIL and r.verdict.exit_code == 1 and r.breaks == [arp]
    r = result(diag([arp]), diag([]))
    assert r.verdict is Verdict.FIXED and r.verdict.exit_code == 0 and r.fixes == [arp]
    r = result(diag([arp]), diag([finding("rs-answers-arp")]))
    assert r.verdict is Verdict.PASS and len(r.still) == 1
    # the same scenario on another host is another finding
    r = result(diag([arp]), diag([finding("rs-answers-arp", "rs2")]))
    assert r.verdict is Verdict.FAIL and len(r.breaks) == 1 and len(r.fixes) == 1


def test_finding_key_is_kind_host_service_or_star_when_host_wide():
    # a host-wide fault is one finding whatever service shows it; others are per service
    assert finding_key(finding("rs-answers-arp")) == ("rs-answers-arp", ("rs1",), "*")
    assert finding_key(finding("vip-on-lan-interface")) == ("vip-on-lan-interface", ("rs1",), SVC)


def test_lost_connections_fail_even_without_a_finding():
    r = result(diag([], 4, 4), diag([], 2, 4))
    assert r.verdict is Verdict.FAIL and [s.service for s in r.lost] == [SVC]
    assert result(diag([], 2, 4), diag([], 4, 4)).verdict is Verdict.PASS


def test_reload_budget():
    rel = ReloadResult(["lvs1"], before=2, during=10, after=4, failed=2, reset=1,
                       holder_changes=2)
    assert result(diag([]), diag([]), rel).verdict is Verdict.FAIL
    assert result(diag([]), diag([]), rel, budget=3).verdict is Verdict.PASS
    rel.errors.append("the IPVS table did not settle")
    assert result(diag([]), diag([]), rel, budget=3).verdict is Verdict.FAIL


def test_junit_shape_and_failure_count():
    added = [finding("rs-answers-arp"), finding("missing-vip-on-rs", "rs2")]
    r = result(diag([finding("stale-vip-on-lo", "client")]), diag(added, 3, 4),
               ReloadResult(["lvs1"], failed=1))
    root = ET.fromstring(junit(r))
    assert root.tag == "testsuites"
    [suite] = root
    assert suite.tag == "testsuite"
    cases = [c for c in suite if c.tag == "testcase"]
    assert all(c.get("name") and c.get("classname") for c in cases)
    failures = [c for c in cases if c.find("failure") is not None]
    # 2 added findings, 1 service losing connections, the reload over budget
    assert len(failures) == 4 == int(suite.get("failures")) == int(root.get("failures"))
    assert int(suite.get("tests")) == len(cases) == 1 + 2 + 1 + 1
    assert [c.get("name") for c in cases if c.find("skipped") is not None] == []
    assert all(f.get("message") for c in failures for f in c.iter("failure"))


def test_fixed_finding_passes_in_junit_and_unchanged_is_skipped():
    same = finding("rs-answers-arp")
    r = result(diag([same, finding("missing-vip-on-rs", "rs2")]),
               diag([finding("rs-answers-arp")]))
    suite = ET.fromstring(junit(r))[0]
    assert suite.get("failures") == "0" and suite.get("skipped") == "1"


def test_markdown_and_html_escape_and_say_everything():
    r = result(diag([]), diag([finding("rs-answers-arp", "rs|1 <b>")], 3, 4),
               ReloadResult(["lvs1"], before=2, during=6, after=4, failed=1,
                            out_during=["192.0.2.11 of 192.0.2.100:80/tcp"]))
    r.masked.append("the kernel uses max(all, eth0) for arp_announce: ...")
    md = markdown(r)
    assert md.startswith("## \u274c drlab gate: FAIL")
    assert "rs\\|1 &lt;b&gt;" in md and "<b>" not in md
    assert "| 1 | 0 |" in md and "192.0.2.11 of 192.0.2.100:80/tcp" in md
    assert "### Masked" in md and "drlab gate --topology c.toml --apply rs1=90.conf" in md
    page = html(r)
    assert "<b>" not in page.replace("<b>drlab", "") and "&lt;b&gt;" in page


@pytest.mark.parametrize("before,after,want", [([], [], "PASS"),
                                               (["rs-answers-arp"], [], "FIXED")])
def test_markdown_verdicts(before, after, want):
    r = result(diag([finding(n) for n in before]), diag([finding(n) for n in after]))
    assert f"drlab gate: {want}" in markdown(r)

"""diagnose's matching of measured symptoms to catalogue scenarios (pure: the
measurements are given; the integration tests measure them in twins)."""

from __future__ import annotations

import pytest

from lab.model import Address, Interface, RealServer, Route, VirtualService, default_dr
from lab.model.defaults import to_ipv6, v6
from lab.probes.labcheck import Symptom, SymptomKind, connection_failed
from lab.probes.labcheck import answers_arp as arp_symptom
from lab.scenarios import REGISTRY
from lab.scenarios.diagnose import (
    NAMED,
    SAMPLE_OVER,
    Diagnosis,
    RealServerCheck,
    RsStatus,
    ServiceResult,
    answers_arp,
    explain,
    predictions,
    scenario,
    services_to_measure,
    unique,
)

VIP = "192.0.2.100"


def result(census=("director",), failed=(), symptoms=(), entry="director", rs=("rs1", "rs2")):
    failed = [f.detail for f in failed]  # the client's errors, as the probe records them
    return ServiceResult("192.0.2.100:80/tcp", "director", list(census), 4, failed,
                         {r: 2 for r in rs}, entry, list(symptoms))


IGN0 = {"net.ipv4.conf.all.arp_ignore": "0", "net.ipv4.conf.eth0.arp_ignore": "0"}


@pytest.mark.parametrize("edit, name", [
    (lambda h: h.sysctls.update(IGN0), "rs-answers-arp"),
    (lambda h: h.sysctls.update({**IGN0, "net.ipv4.conf.lo.arp_ignore": "1"}),
     "sysctls-on-lo-only"),
    (lambda h: (h.sysctls.update(IGN0), setattr(h, "lo", [Address("192.0.2.100/24")])),
     "vip-wide-prefix-on-lo"),
    (lambda h: (setattr(h, "lo", []), h.interfaces[0].addresses.append(
        Address("192.0.2.100/32"))), "vip-on-lan-interface"),
    (lambda h: h.sysctls.update({"net.ipv4.conf.all.arp_ignore": "3"}), "arp-ignore-3-scope"),
    (lambda h: (h.sysctls.update(IGN0), setattr(h, "lo", []), setattr(h, "dummies", [
        Interface("kube-ipvs0", "", [Address("192.0.2.100/32")], kind="dummy")])),
     "noarp-dummy-vip"),
])
def test_an_arp_answer_is_explained_by_what_the_host_is(edit, name):
    t = default_dr()
    edit(t.host("rs1"))
    assert answers_arp(t, t.service, t.host("rs1")) is REGISTRY[name]
    [f] = explain(t, t.service, result(census=("director", "rs1")))
    assert (f.name, f.hosts, f.measured) == (name, ["rs1"], True)
    assert f.fix == REGISTRY[name].fix


def test_a_moved_vip_entry_is_poisoning_unless_the_host_answered_arp():
    t = default_dr()
    t.host("rs2").sysctls.update({"net.ipv4.conf.all.arp_announce": "0",
                                  "net.ipv4.conf.eth0.arp_announce": "0"})
    bypass = [Symptom(SymptomKind.PATH, VIP, detail="rs2 192.0.2.10:5: no request to the "
                      "director's MAC")]
    [f] = explain(t, t.service, result(entry="rs2", symptoms=bypass))
    assert f.name == "arp-announce-poisoning" and f.hosts == ["rs2"]
    t.host("rs2").sysctls.update(IGN0)
    [f] = explain(t, t.service, result(census=("director", "rs2"), entry="rs2",
                                       symptoms=bypass))
    assert f.name == "rs-answers-arp" and "arp_announce is 0 as well" in f.evidence[-1]


def test_failed_connections_name_the_real_server_that_cannot_serve():
    t = default_dr(rs_without_vip=("rs2",))
    fails = [connection_failed(VIP, "client -> 192.0.2.100:80: no answer")]
    [f] = explain(t, t.service, result(failed=fails[:1], symptoms=fails))
    assert (f.name, f.hosts) == ("missing-vip-on-rs", ["rs2"])


def test_a_failure_nothing_explains_is_reported_not_dropped():
    t = default_dr()
    fails = [connection_failed(VIP, "client -> 192.0.2.100:80: ECONNRESET")]
    [f] = explain(t, t.service, result(failed=fails[:1], symptoms=fails))
    assert f.name == "unexplained" and f.evidence == [
        "connection to the VIP failed: client -> 192.0.2.100:80: ECONNRESET"]


def test_a_non_member_answering_is_a_stale_holder():
    t = default_dr(rs=3)
    t.service.real_servers = t.service.real_servers[:2]
    t.host("rs3").sysctls.update(IGN0)
    [f] = explain(t, t.service, result(census=("director", "rs3")))
    assert f.name == "stale-vip-on-lo" and "no real server" in f.evidence[-1]


def test_a_prediction_is_labelled_and_unique_merges_evidence():
    t = default_dr()
    rs1 = t.host("rs1")
    rs1.interfaces.append(Interface("eth1", "lan", [Address("198.51.100.5/24")]))
    rs1.sysctls["net.ipv4.conf.all.rp_filter"] = "1"
    [p] = predictions(t)
    assert (p.name, p.measured) == ("rp-filter-multihomed", False)
    d = Diagnosis("c", "k", t, findings=unique([p, predictions(t)[0]]))
    assert len(d.findings) == 1 and not d.ok
    assert "prediction: not measured in the twin" in d.text()


def test_an_ipv6_vip_on_the_lan_interface_is_its_own_scenario():
    t = default_dr()
    rs1 = t.host("rs1")
    rs1.lo = []
    rs1.interfaces[0].addresses.append(Address("192.0.2.100/32"))
    t = to_ipv6(t)
    assert t.service.vip == v6("192.0.2.100")
    assert answers_arp(t, t.service, t.host("rs1")).name == "ipv6-vip-on-lan-interface"
    [f] = explain(t, t.service, result(census=("director", "rs1")))
    assert f.fix == REGISTRY["ipv6-vip-on-lan-interface"].fix


def test_a_real_server_routing_via_the_director_is_predicted_unless_it_accepts_local():
    t = default_dr(rs=1)
    dip = t.primary_ip("director")
    t.host("rs1").routes = [Route("default", dip)]
    [p] = predictions(t)
    assert (p.name, p.hosts, p.measured) == ("rs-gateway-is-director", ["rs1"], False)
    assert dip in p.evidence[0]
    d = t.host("director")
    d.sysctls.update({"net.ipv4.conf.all.accept_local": "1",
                      "net.ipv4.conf.all.rp_filter": "1"})
    assert predictions(t) == []  # strict rp_filter passes: the VIP is on that interface
    d.interfaces[0].addresses = [a for a in d.interfaces[0].addresses if a.ip != t.service.vip]
    d.lo.append(Address(f"{t.service.vip}/32"))
    assert [p.name for p in predictions(t)] == ["rs-gateway-is-director"]
    d.sysctls["net.ipv4.conf.all.rp_filter"] = "2"
    assert predictions(t) == []
    t.host("rs1").routes = [Route("default", "192.0.2.1")]
    t.host("director").sysctls.clear()
    assert predictions(t) == []


def test_failures_while_several_hosts_answer_for_the_vip_go_with_that_finding():
    t = default_dr()
    t.host("rs1").sysctls.update(IGN0)
    fails = [connection_failed(VIP, "client -> 192.0.2.100:80: ECONNRESET")]
    [f] = explain(t, t.service, result(census=("director", "rs1"), failed=fails[:1],
                                       symptoms=[arp_symptom("rs1", VIP), *fails],
                                       entry=None))
    assert f.name == "rs-answers-arp" and "ECONNRESET" in f.evidence[-1]
    # a cause of its own still comes first (rs2 lacks the VIP)
    t = default_dr(rs_without_vip=("rs2",))
    t.host("rs1").sysctls.update(IGN0)
    found = explain(t, t.service, result(census=("director", "rs1"), failed=fails[:1],
                                         symptoms=fails, entry=None))
    assert [f.name for f in found] == ["rs-answers-arp", "missing-vip-on-rs"]


def test_ipvs_keeping_conntrack_with_port_reuse_checks_is_a_predicted_stall():
    t = default_dr()
    assert predictions(t) == []
    t.host("director").sysctls["net.ipv4.vs.conntrack"] = "1"
    [p] = predictions(t)
    assert (p.name, p.hosts, p.measured) == ("conn-reuse-stall", ["director"], False)
    t.host("director").sysctls["net.ipv4.vs.conn_reuse_mode"] = "0"
    assert predictions(t) == []


def test_diagnose_names_only_catalogue_scenarios_and_a_misspelt_one_raises():
    """Every scenario a finding can name is the registry's own object (looked up when
    diagnose is imported), and a name the catalogue lacks raises at that lookup."""
    assert len({s.name for s in NAMED}) == len(NAMED)
    assert all(REGISTRY[s.name] is s for s in NAMED)
    with pytest.raises(LookupError, match="rs-answers-apr"):
        scenario("rs-answers-apr")


def test_symptoms_are_data_with_the_text_people_read():
    assert arp_symptom("rs1", VIP).text() == "rs1 answers who-has 192.0.2.100"
    assert Symptom(SymptomKind.DIRECTOR_SILENT, VIP, host="director").text() == (
        "the director director does not answer who-has 192.0.2.100")
    assert Symptom(SymptomKind.HOLDERS, VIP, hosts=("d1", "d2")).text() == (
        "2 directors hold 192.0.2.100: d1, d2")
    assert Symptom(SymptomKind.HOLDERS, VIP).text() == "0 directors hold 192.0.2.100"
    assert Symptom(SymptomKind.ENTRY_MOVED, VIP, host="rs2", hop="client").text() == (
        "client's neighbour entry for 192.0.2.100 points to rs2, not the director: "
        "connections bypass it")
    assert connection_failed(VIP, "x: ECONNRESET").text() == (
        "connection to the VIP failed: x: ECONNRESET")


def test_a_twin_validation_compares_findings_and_services_as_data():
    from lab.scenarios.base import Change
    from lab.scenarios.validate import Served, ServiceChange, TwinValidation

    t = default_dr()
    t.host("rs1").sysctls.update(IGN0)
    before = Diagnosis("c", "k", t, services=[result(census=("director", "rs1"))],
                       findings=explain(t, t.service, result(census=("director", "rs1"))))
    after = Diagnosis("c", "k", t, services=[result()])
    tv = TwinValidation(Change({"net.ipv4.conf.all.arp_ignore": "1"}, "realserver"),
                        ["rs1"], before, after)
    assert [f.name for f in tv.fixes] == ["rs-answers-arp"] and not tv.breaks and not tv.still
    assert tv.services() == [ServiceChange("192.0.2.100:80/tcp",
                                           Served(4, 4, ["director", "rs1"]),
                                           Served(4, 4, ["director"]))]
    data = tv.to_json()
    assert data["services"] == [{"service": "192.0.2.100:80/tcp",
                                 "before": {"ok": 4, "of": 4, "census": ["director", "rs1"]},
                                 "after": {"ok": 4, "of": 4, "census": ["director"]}}]
    assert data["fixes"][0]["name"] == "rs-answers-arp"
    assert "connections 4/4 -> 4/4; ARP answered by director, rs1 -> director" in tv.text()


# -- one fault must not hide another (#26) -------------------------------------------

VIP2 = "192.0.2.200"
LO_ONLY = {**IGN0, "net.ipv4.conf.lo.arp_ignore": "1", "net.ipv4.conf.lo.arp_announce": "2"}


def two_faults():
    """rs2 answers ARP (its knobs on lo only) for both VIPs; rs3 holds no VIP."""
    t = default_dr(rs=3, rs_without_vip=("rs3",))
    t.host("rs2").sysctls.update(LO_ONLY)
    t.host("director").interfaces[0].addresses.append(Address(f"{VIP2}/32"))
    for rs in ("rs1", "rs2"):
        t.host(rs).lo.append(Address(f"{VIP2}/32"))
    t.services.append(VirtualService(VIP2, 443, "director",
                                     [RealServer("rs1"), RealServer("rs2"), RealServer("rs3")]))
    return t


def as_is(service, vip, passes=()):
    """What the twin measured of a service as the cluster is: rs2 drew every connection
    (its ARP answer moved the client's entry), so none reached rs3; then the pass
    through the director (``passes``: host -> status)."""
    bypass = [Symptom(SymptomKind.PATH, vip, detail=f"rs2 192.0.2.10:{port}: no request to "
                      "the director's MAC") for port in range(5000, 5004)]
    return ServiceResult(service, "director", ["director", "rs2"], 4, [], {"rs2": 4}, "rs2",
                         [arp_symptom("rs2", vip), *bypass], bypassed=4,
                         real_servers=[RealServerCheck(h, st, "" if st is RsStatus.VERIFIED
                                                       else "client -> VIP: no answer")
                                       for h, st in passes])


PASSES = [("rs1", RsStatus.VERIFIED), ("rs2", RsStatus.VERIFIED), ("rs3", RsStatus.FAILED)]


def test_a_fault_hidden_by_an_arp_answer_is_found_through_the_director_each_once():
    t = two_faults()
    results = [as_is(t.services[0].key, VIP, PASSES), as_is(t.services[1].key, VIP2, PASSES)]
    found = []
    for svc, res in zip(t.services, results, strict=True):
        found += explain(t, svc, res)
    findings = unique(found + predictions(t, results))
    assert sorted((f.name, f.hosts, f.service, f.measured) for f in findings) == [
        ("missing-vip-on-rs", ["rs3"], "192.0.2.100:80/tcp", True),
        ("missing-vip-on-rs", ["rs3"], "192.0.2.200:443/tcp", True),
        ("sysctls-on-lo-only", ["rs2"], "192.0.2.100:80/tcp, 192.0.2.200:443/tcp", True)]
    [lo] = [f for f in findings if f.name == "sysctls-on-lo-only"]
    [miss, _] = [f for f in findings if f.name == "missing-vip-on-rs"]
    assert lo.services == ["192.0.2.100:80/tcp", "192.0.2.200:443/tcp"]
    assert lo.key == ("sysctls-on-lo-only", ("rs2",), "*")
    assert miss.key == ("missing-vip-on-rs", ("rs3",), "192.0.2.100:80/tcp")
    assert "pinned" in miss.evidence[0] and "no answer" in miss.evidence[0]


def test_without_the_pass_the_hidden_fault_is_predicted_not_dropped():
    t = two_faults()
    results = [as_is(t.services[0].key, VIP)]  # no pass; the second service not measured
    findings = unique(explain(t, t.services[0], results[0]) + predictions(t, results))
    assert sorted((f.name, f.hosts, f.service, f.measured) for f in findings) == [
        ("missing-vip-on-rs", ["rs3"], "192.0.2.100:80/tcp", False),
        ("missing-vip-on-rs", ["rs3"], "192.0.2.200:443/tcp", False),
        ("sysctls-on-lo-only", ["rs2"], "192.0.2.100:80/tcp", True)]
    assert results[0].status("rs1") is RsStatus.NOT_VERIFIED  # never a tick


def test_a_real_server_reached_through_the_director_is_not_predicted():
    t = default_dr(rs_without_vip=("rs2",))
    res = as_is(t.service.key, VIP, [("rs1", RsStatus.VERIFIED), ("rs2", RsStatus.VERIFIED)])
    assert [f.name for f in predictions(t, [res])] == []
    assert [f.name for f in predictions(t)] == ["missing-vip-on-rs"]


def test_a_pass_that_fails_for_no_known_reason_names_the_real_server():
    t = default_dr()
    res = as_is(t.service.key, VIP, [("rs1", RsStatus.VERIFIED), ("rs2", RsStatus.FAILED)])
    res.census, res.vip_entry, res.symptoms = ["director"], "director", []
    [f] = explain(t, t.service, res)
    assert (f.name, f.hosts) == ("unexplained", ["rs2"])


def test_repeated_symptoms_are_grouped_with_their_count():
    res = as_is("192.0.2.100:80/tcp", VIP)
    assert res.grouped_symptoms() == [
        ("rs2 answers who-has 192.0.2.100", 1),
        ("rs2: no request to the director's MAC", 4)]


def test_the_services_measured_are_chosen_in_one_place():
    t = two_faults()
    assert services_to_measure(t, None).chosen == t.services
    assert services_to_measure(t, None).all
    assert services_to_measure(t, ["192.0.2.200:443"]).chosen == [t.services[1]]


def test_a_large_twin_measures_a_sample_that_it_names_unless_services_are_named():
    from lab.model.scale import many_services

    t = many_services(SAMPLE_OVER + 1)
    picked = services_to_measure(t, None)
    assert not picked.all and len(picked.chosen) == 12
    assert picked.chosen[0] is t.services[0] and picked.chosen[-1] is t.services[-1]
    assert picked.said().startswith(f"measured 12 of {SAMPLE_OVER + 1} services")
    assert services_to_measure(t, None).chosen == picked.chosen   # seeded: repeatable
    named = services_to_measure(t, [f"{s.vip}:80" for s in t.services])
    assert named.all and named.chosen == t.services
    assert services_to_measure(many_services(SAMPLE_OVER), None).all


def test_passes_failing_at_the_director_go_with_its_finding_not_one_per_real_server():
    t = default_dr()
    t.host("director").interfaces[0].addresses.insert(0, Address("192.0.2.100/24"))
    fails = [connection_failed(VIP, "client -> 192.0.2.100:80: no answer")]
    res = as_is(t.service.key, VIP, [("rs1", RsStatus.FAILED), ("rs2", RsStatus.FAILED)])
    res.census, res.vip_entry, res.symptoms, res.failed = ["director"], "director", fails, [
        "no answer"]
    [f] = explain(t, t.service, res)
    assert (f.name, f.hosts) == ("director-vip-primary", ["director"])
    assert sum("pinned" in e for e in f.evidence) == 2

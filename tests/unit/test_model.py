"""Topology model and validation: pure logic, no root."""

import pytest

from lab.errors import TopologyError
from lab.model import (
    RS_ARP_SYSCTLS,
    Address,
    Host,
    Interface,
    Segment,
    Topology,
    check_sysctl,
    default_dr,
)


def problems(t: Topology) -> str:
    with pytest.raises(TopologyError) as e:
        t.validate()
    return str(e.value)


def test_default_topology_is_valid_and_complete():
    t = default_dr().validate()
    assert [h.name for h in t.hosts] == ["client", "director", "rs1", "rs2"]
    assert {s.name for s in t.segments} == {"lan"}
    assert t.service.vip == "192.0.2.100"
    assert [r.host for r in t.service.real_servers] == ["rs1", "rs2"]
    for rs in t.real_servers:
        assert [a.cidr for a in rs.lo] == ["192.0.2.100/32"]
        assert RS_ARP_SYSCTLS.items() <= rs.sysctls.items()
    assert t.warnings() == []


def test_router_variant_puts_client_on_its_own_segment():
    t = default_dr(behind_router=True, rs=3).validate()
    assert {s.name for s in t.segments} == {"lan", "wan"}
    client = t.host("client")
    assert [i.segment for i in client.interfaces] == ["wan"]
    assert client.routes[0].via == "198.51.100.1"
    assert t.host("router").sysctls["net.ipv4.conf.all.forwarding"] == "1"
    assert all(r.routes and r.routes[0].via == "192.0.2.1" for r in t.real_servers)


def test_default_dr_parameters():
    t = default_dr(rs=4, scheduler="wrr", weights={"rs2": 3},
                   rs_sysctls={"net.ipv4.conf.all.arp_ignore": 0},
                   host_sysctls={"rs1": {"net.ipv4.conf.eth0.arp_announce": 0}}).validate()
    assert [r.weight for r in t.service.real_servers] == [1, 3, 1, 1]
    assert t.host("rs3").sysctls["net.ipv4.conf.all.arp_ignore"] == "0"
    assert t.host("rs1").sysctls["net.ipv4.conf.eth0.arp_announce"] == "0"
    assert t.host("rs2").sysctls["net.ipv4.conf.eth0.arp_announce"] == "2"


def test_default_dr_rejects_unknown_host_sysctls_and_bad_counts():
    with pytest.raises(TopologyError, match="unknown hosts: rs9"):
        default_dr(host_sysctls={"rs9": {}})
    with pytest.raises(TopologyError, match="1..150"):
        default_dr(rs=0)


def test_rs_without_vip_is_legal_but_warned():
    t = default_dr(rs_without_vip=("rs2",)).validate()
    assert t.host("rs2").lo == []
    assert any("rs2" in w and "no VIP" in w for w in t.warnings())


def test_duplicate_address():
    t = default_dr()
    t.host("rs2").interfaces[0].addresses[0] = Address("192.0.2.101/24")
    assert "duplicate address 192.0.2.101 (also on host 'rs1')" in problems(t)


def test_duplicate_host_and_segment():
    t = default_dr()
    t.hosts.append(Host("rs1", "realserver"))
    t.segments.append(Segment("lan"))
    msg = problems(t)
    assert "duplicate host 'rs1'" in msg
    assert "duplicate segment 'lan'" in msg


def test_unknown_segment_and_host():
    t = default_dr()
    t.host("rs1").interfaces[0].segment = "nowhere"
    t.service.director = "ghost"
    msg = problems(t)
    assert "host 'rs1': interface 'eth0': unknown segment 'nowhere'" in msg
    assert "unknown director host 'ghost'" in msg


def test_interface_name_over_15_characters():
    t = default_dr()
    t.host("client").interfaces[0].name = "a" * 16
    assert "name is 16 characters, over the kernel's limit of 15" in problems(t)
    t.host("client").interfaces[0].name = "a" * 15
    t.validate()


def test_vip_on_lo_must_be_host_prefix():
    t = default_dr()
    t.host("rs1").lo[0] = Address("192.0.2.100/24")
    assert "host 'rs1': VIP 192.0.2.100/24 on lo must be /32" in problems(t)
    t.waive = frozenset({"vip-lo-prefix"})
    t.validate()


@pytest.mark.parametrize("cidr", ["10.0.0.5/24", "192.168.1.1/24", "8.8.8.8/32", "fd00::1/64",
                                  "192.0.3.1/24"])
def test_address_outside_documentation_ranges(cidr):
    t = default_dr()
    t.host("client").interfaces[0].addresses[0] = Address(cidr)
    assert "outside the documentation ranges" in problems(t)


@pytest.mark.parametrize("cidr", ["192.0.2.7/24", "198.51.100.9/24", "203.0.113.1/24",
                                  "2001:db8::5/64"])
def test_documentation_ranges_are_accepted(cidr):
    t = default_dr()
    t.host("client").interfaces[0].addresses[0] = Address(cidr)
    t.validate()


def test_bad_address_syntax_and_missing_prefix():
    t = default_dr()
    t.host("client").interfaces[0].addresses[0] = Address("192.0.2.300/24")
    assert "is not an address with a prefix" in problems(t)
    t.host("client").interfaces[0].addresses[0] = Address("192.0.2.3")
    assert "needs a prefix length" in problems(t)


def test_vip_outside_ranges_and_service_fields():
    t = default_dr()
    t.service.vip = "10.1.1.1"
    t.service.port = 70000
    t.service.scheduler = "random"
    t.service.protocol = "sctp"
    msg = problems(t)
    assert "VIP 10.1.1.1 is outside the documentation ranges" in msg
    assert "port 70000 out of range" in msg
    assert "unknown scheduler 'random'" in msg
    assert "protocol 'sctp' must be tcp or udp" in msg


def test_director_must_hold_vip_and_roles_must_fit():
    t = default_dr()
    t.host("director").interfaces[0].addresses.pop()
    t.service.real_servers[0] = type(t.service.real_servers[0])("client")
    msg = problems(t)
    assert "director 'director' does not hold the VIP" in msg
    assert "host 'client' is a 'client', not a realserver" in msg


def test_route_gateway_must_be_on_link():
    t = default_dr(behind_router=True)
    t.host("rs1").routes[0] = type(t.host("rs1").routes[0])("default", "203.0.113.1")
    assert "gateway 203.0.113.1 is not on any of the host's subnets" in problems(t)


def test_all_problems_reported_in_one_line():
    t = default_dr()
    t.host("client").interfaces[0].name = "x" * 20
    t.service.port = 0
    e = pytest.raises(TopologyError, t.validate).value
    assert len(e.problems) == 2
    assert "\n" not in str(e)


@pytest.mark.parametrize("key,value,err", [
    ("net.ipv4.conf.all.arp_ignore", "1", None),
    ("net.ipv4.conf.eth0.arp_announce", 2, None),
    ("net.ipv4.vs.conn_reuse_mode", "0", None),
    ("net.ipv4.ip_local_port_range", "40000 50000", None),
    ("kernel.panic", "1", "only per-namespace"),
    ("net.ipv4.conf.eth9.arp_ignore", "1", "no interface 'eth9'"),
    ("net.ipv4.conf.all.arp_ignore", "yes", "is not an integer"),
    ("net.ipv4.conf.all.arp_ignore", True, "is not an integer"),
    ("net.ipv4.conf.all.arp_ignore", "1; rm -rf /", "is not an integer"),
])
def test_check_sysctl(key, value, err):
    got = check_sysctl(key, value, ["eth0"])
    if err is None:
        assert got is None
    else:
        assert err in got


def test_bad_sysctl_in_topology_names_the_host():
    t = default_dr()
    t.host("rs1").sysctls["net.ipv4.conf.all.arp_ignore"] = "one"
    assert "host 'rs1': sysctl 'net.ipv4.conf.all.arp_ignore': value 'one'" in problems(t)


def test_host_and_segment_names_are_short_identifiers():
    t = Topology("x", [Host("Bad-Name", "client", [Interface("eth0", "lan-1")])],
                 [Segment("lan-1")])
    msg = problems(t)
    assert "host 'Bad-Name': name must match" in msg
    assert "segment name 'lan-1' must match" in msg


def test_primary_ip_and_owner_lookup():
    t = default_dr()
    assert t.primary_ip("director") == "192.0.2.2"
    assert t.primary_ip("rs2") == "192.0.2.102"
    assert t.owner_of("192.0.2.101") == "rs1"
    assert t.owner_of("192.0.2.100") == "director"
    assert t.owner_of("203.0.113.9") is None


def test_docs_catalogue_is_generated_from_the_registry():
    from pathlib import Path

    from lab.scenarios import catalogue_markdown

    page = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    assert catalogue_markdown() in page, (
        "docs/scenarios.md's scenario table is stale: "
        "regenerate it with `drlab scenarios --markdown`")


def test_client_addresses_for_source_hashing():
    t = default_dr(client_addresses=3).validate()
    assert [a.cidr for a in t.host("client").interfaces[0].addresses] == [
        "192.0.2.10/24", "192.0.2.11/24", "192.0.2.12/24"]
    with pytest.raises(TopologyError, match="1..80"):
        default_dr(client_addresses=81)


def test_fwmark_validation():
    default_dr(fwmark=1, extra_ports=(8080, 8443)).validate()
    t = default_dr(extra_ports=(8080,))
    assert "extra_ports need a fwmark service" in problems(t)
    t = default_dr(fwmark=0)
    assert "fwmark 0 out of range" in problems(t)


def _report(cells: dict[str, dict[str, str | None]]) -> dict:
    """A `kernels run ... scenario` report: scenario -> kernel name -> status."""
    names = sorted({k for row in cells.values() for k in row})
    return {"what": "scenario", "args": ["all"],
            "kernels": [{"name": n, "release": {"bookworm": "6.1.0-56-amd64",
                                                "trixie": "6.12.57+deb13-amd64",
                                                "newest-7": "7.3.4+deb13-amd64",
                                                "host": "6.18.4"}[n],
                         "suite": {"trixie": "trixie",
                                   "newest-7": "trixie-backports"}.get(n)}
                        for n in names],
            "rows": [{"key": key, "kernels": {n: ({"status": st} if st else None)
                                              for n, st in row.items()}}
                     for key, row in cells.items()]}


def test_observations_come_from_a_kernel_report_and_replace_per_release():
    from lab.errors import UsageError
    from lab.scenarios import observed

    rep = _report({"a": {"bookworm": "ok", "trixie": "not reproduced", "host": "not run"},
                   "b": {"bookworm": None, "trixie": "ok", "host": "ok", "newest-7": "ok"}})
    new = observed.from_report(rep, "2026-11-27")
    assert [(e["suite"], e["reproduced"]) for e in new["a"]] == [("bookworm", True),
                                                                 ("trixie", False)]
    # a build asked for by another name (newest-7) is labelled by the suite that served it
    assert [(e["kernel"], e["suite"]) for e in new["b"]] == [
        ("6.12.57+deb13-amd64", "trixie"), ("6.18.4", None),
        ("7.3.4+deb13-amd64", "trixie-backports")]
    assert observed.short(observed.merged({}, new, ["b"])["b"]) == (
        "6.12 (trixie), 6.18, 7.3 (trixie-backports)")
    old = {"a": [{"kernel": "6.12.57+deb13-amd64", "suite": "trixie", "reproduced": True,
                  "date": "2026-01-01"},
                 {"kernel": "5.10.0-1-amd64", "suite": "bullseye", "reproduced": True,
                  "date": "2026-01-01"}],
           "gone": [{"kernel": "6.1", "suite": None, "reproduced": True, "date": "x"}]}
    rec = observed.merged(old, new, ["a", "b"])
    assert list(rec) == ["a", "b"]  # a scenario no longer in the catalogue is dropped
    assert [(e["kernel"], e["reproduced"]) for e in rec["a"]] == [
        ("5.10.0-1-amd64", True), ("6.1.0-56-amd64", True), ("6.12.57+deb13-amd64", False)]
    assert observed.short(rec["a"]) == ("5.10 (bullseye), 6.1 (bookworm), "
                                        "6.12 (trixie) NOT reproduced")
    with pytest.raises(UsageError, match="not a `drlab kernels run ... scenario`"):
        observed.from_report({"what": "matrix", "rows": []}, "x")


def test_the_debian_lines_of_a_record_are_two_suites_and_the_7x_series():
    from lab.scenarios import observed

    def e(kernel, suite, reproduced=True):
        return {"kernel": kernel, "suite": suite, "reproduced": reproduced, "date": "x"}

    assert observed.lines([e("6.1.0-57-amd64", "bookworm"), e("6.12.117+deb13-amd64", "trixie"),
                           e("7.3.4+deb13-amd64", "trixie-backports")]) == set(observed.LINES)
    assert observed.lines([e("7.4.1+deb14-amd64", "sid")]) == {"7.x"}  # any 7.x build
    assert observed.lines([e("7.3.4+deb13-amd64", "trixie-backports", False),  # not reproduced
                           e("7.0.1-custom", None),  # not a Debian build (a path, the host)
                           e("6.18.12+deb13-amd64", "trixie-backports")]) == set()


def test_every_scenario_cites_public_addresses_and_was_observed_on_three_debian_lines():
    from lab.scenarios import BY_HAND, REGISTRY, links, observed

    rec = observed.load()
    assert set(rec) <= set(REGISTRY) | set(BY_HAND)
    for s in [*REGISTRY.values(), *BY_HAND.values()]:
        assert links(s) and all(u.startswith("https://") for u in links(s)), s.name
        if s.by_hand:   # measured and recorded, not required to reproduce
            continue
        lack = set(observed.LINES) - observed.lines(rec.get(s.name, []))
        assert not lack, (
            f"{s.name}: no record of it reproducing on {', '.join(sorted(lack))}; run the "
            "kernel matrix (`drlab kernels run --kernel bookworm --kernel trixie --kernel "
            "newest-7 --json R scenario all`) and `drlab scenarios --record R`")

"""Scale labs as data: many services, their VIPs, the aggregate route, sampling, summaries."""

import time

import pytest

from lab.errors import TopologyError
from lab.model.ranges import summary
from lab.model.scale import LO_LIMIT, PER_DUMMY, aggregate, many_services
from lab.model.topology import SCALE_RANGE_WAIVER
from lab.probes.dump import address_summary
from lab.probes.labcheck import pick
from lab.roles.director import restore_rules


def test_many_services_lo():
    t = many_services(300).validate()
    assert [s.vip for s in t.services[:2]] == ["198.18.0.1", "198.18.0.2"]
    assert t.services[-1].vip == "198.18.1.44"
    assert len(t.host("rs1").lo) == 300 and not t.host("rs1").dummies
    # the director holds them on dummies; the client has ONE aggregate route via it
    assert sum(len(d.addresses) for d in t.host("director").dummies) == 300
    assert [(r.dst, r.via) for r in t.host("client").routes] == [("198.18.0.0/23", "192.0.2.2")]
    assert not t.warnings()


def test_many_services_dummies_above_lo_limit():
    t = many_services(LO_LIMIT + 1).validate()
    rs = t.host("rs2")
    assert not rs.lo
    assert [len(d.addresses) for d in rs.dummies] == [PER_DUMMY, LO_LIMIT + 1 - PER_DUMMY]
    assert many_services(10, holder="dummy").host("rs1").dummies


def test_restore_rules_one_table():
    rules = restore_rules(many_services(1000, rs=3)).splitlines()
    assert len(rules) == 1000 * 4
    assert rules[0] == "-A -t 198.18.0.1:80 -s rr"
    assert rules[-1] == "-a -t 198.18.3.232:80 -r 192.0.2.103:80 -g -w 1"


def test_scale_range_needs_the_waiver():
    t = many_services(2)
    t.waive = frozenset()
    with pytest.raises(TopologyError) as e:
        t.validate()
    assert "outside the documentation ranges" in str(e.value)
    assert SCALE_RANGE_WAIVER in many_services(2).waive


def test_validation_still_finds_duplicates_and_missing_vips():
    t = many_services(50)
    t.services.append(t.services[7])
    t.host("director").dummies[0].addresses.pop(3)  # 198.18.0.4 not held by the director
    problems = str(pytest.raises(TopologyError, t.validate).value)
    assert "services[50] (198.18.0.8:80): the same service is defined twice" in problems
    assert "director 'director' does not hold the VIP 198.18.0.4" in problems


def test_validation_is_linear():
    """10x the services costs about 10x (on a loaded machine: under 40x), not 100x: nothing
    walks all services per service (it once did: keys.count, the director's addresses
    and each real server's per service)."""
    def cost(n):
        t = many_services(n, holder="lo")
        t0 = time.perf_counter()
        t.validate()
        t.warnings()
        return time.perf_counter() - t0
    cost(500)
    small, big = min(cost(500) for _ in range(3)), min(cost(5000) for _ in range(2))
    assert big / small < 40, (small, big)


def test_bad_arguments():
    for kw in ({"n": 0}, {"n": 200000}, {"n": 5, "rs": 0}, {"n": 5, "holder": "eth0"}):
        with pytest.raises(TopologyError):
            many_services(**kw)


def test_aggregate():
    assert aggregate("198.18.0.1", "198.18.0.1") == "198.18.0.1/32"
    assert aggregate("198.18.0.1", "198.18.195.80") == "198.18.0.0/16"
    assert aggregate("198.18.0.1", "198.19.0.1") == "198.18.0.0/15"


def test_pick_first_last_and_k_random():
    got = pick(50000, 8, seed=1)
    assert got[0] == (0, "first") and got[-1] == (49999, "last")
    assert sum(why == "random" for _i, why in got) == 8
    assert got == pick(50000, 8, seed=1)  # the seed reproduces the draw
    assert pick(1, 8, seed=1) == [(0, "first")]
    assert pick(3, 8, seed=1) == [(0, "first"), (1, "random"), (2, "last")]


def test_a_scale_labs_vips_are_one_range_in_words():
    vips = [str(s.vip) for s in many_services(50000).services]
    assert summary(vips) == "198.18.0.1-198.18.195.80 (50000 addresses)"


def test_status_summarises_many_addresses():
    assert address_summary(["192.0.2.2/24", "192.0.2.100/32"]) == "192.0.2.2/24 192.0.2.100/32"
    many = [f"198.18.0.{i}/32" for i in range(1, 201)] + ["192.0.2.2/24"]
    assert address_summary(many) == "/32: 198.18.0.1-198.18.0.200 (200 addresses); /24: 192.0.2.2"

"""lab.model.ranges: addresses said as ranges, aggregated as a router would."""

from __future__ import annotations

import ipaddress

from lab.model.ranges import aggregate, runs, summary

A = ipaddress.ip_address


def ips(first: str, n: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [A(first) + k for k in range(n)]


def test_runs_join_consecutive_addresses_and_keep_the_families_apart() -> None:
    got = runs([A("192.0.2.3"), A("192.0.2.1"), A("192.0.2.2"), A("192.0.2.9"),
                A("2001:db8::1"), A("2001:db8::2"), A("192.0.2.2")])
    assert got == [(A("192.0.2.1"), A("192.0.2.3")), (A("192.0.2.9"), A("192.0.2.9")),
                   (A("2001:db8::1"), A("2001:db8::2"))]


def test_summary_lists_few_addresses_and_gives_a_range_for_many() -> None:
    assert summary(ips("192.0.2.1", 3)) == "192.0.2.1, 192.0.2.2, 192.0.2.3"
    assert summary(ips("198.18.0.1", 5000)) == "198.18.0.1-198.18.19.136 (5000 addresses)"
    scattered = [A("198.18.0.0") + 2 * k for k in range(20)]
    text = summary(scattered, limit=4)
    assert text.endswith("... (16 more ranges) (20 addresses)")
    assert text.count(",") == 4


def test_aggregate_holds_exactly_the_addresses() -> None:
    vips = ips("198.18.0.1", 5000)
    nets = aggregate(vips)
    assert len(nets) <= 2 * 32
    held = {a for n in nets for a in n}
    assert held == set(vips)
    assert aggregate(ips("192.0.2.0", 256)) == [ipaddress.ip_network("192.0.2.0/24")]
    assert [str(n) for n in aggregate([A("2001:db8::1"), A("192.0.2.1")])] == [
        "192.0.2.1/32", "2001:db8::1/128"]

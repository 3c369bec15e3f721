"""The estimator-stall scenario (issue #27): run by name only, never in `scenario all`
nor CI's catalogue, and its table is what ipvsadm -R takes."""

from __future__ import annotations

import pytest

from lab.errors import UsageError
from lab.scenarios import BY_HAND, REGISTRY, get
from lab.scenarios.catalogue.scale import SERVICES, Latencies, table


def test_the_stall_scenario_runs_by_name_only() -> None:
    name = "estimator-stall-many-services"
    assert name in BY_HAND and name not in REGISTRY
    assert get(name) is BY_HAND[name] and get(name).by_hand
    assert all(s.by_hand is None for s in REGISTRY.values())
    with pytest.raises(UsageError):
        get("no-such-scenario")


def test_the_table_holds_the_services_in_the_benchmarking_range() -> None:
    lines = table(SERVICES).splitlines()
    assert len(lines) == len(set(lines)) == 50_000
    assert lines[0] == "-A -t 198.18.0.1:80 -s rr"
    assert lines[-1] == "-A -t 198.18.195.80:80 -s rr"


def test_latencies_quantiles() -> None:
    lat = Latencies("w", [float(k) for k in range(1, 1001)])
    assert (lat.q(0.5), lat.q(0.99), lat.q(0.999)) == (501.0, 991.0, 1000.0)
    assert lat.line() == "w: n=1000 p50=501.0 ms p99=991.0 ms p99.9=1000.0 ms max=1000.0 ms"

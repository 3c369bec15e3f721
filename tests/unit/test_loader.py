"""TOML topology files: round trip and precise errors, no root."""

from pathlib import Path

import pytest

from lab.errors import TopologyError
from lab.model import default_dr, load_topology, topology_from_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dr.toml"


def test_example_file_equals_default_topology():
    t = load_topology(EXAMPLE)
    d = default_dr()
    assert t.name == "dr-file"
    assert [(h.name, h.role) for h in t.hosts] == [(h.name, h.role) for h in d.hosts]
    for h in d.hosts:
        got = t.host(h.name)
        assert got.interfaces == h.interfaces
        assert got.lo == h.lo
        assert got.sysctls == h.sysctls
    assert t.service == d.service


def write(tmp_path, text):
    p = tmp_path / "t.toml"
    p.write_text(text)
    return p


def test_missing_file(tmp_path):
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "nope.toml")


def test_not_toml(tmp_path):
    with pytest.raises(TopologyError, match="not valid TOML"):
        load_topology(write(tmp_path, "hosts = [[["))


def test_unknown_keys_are_errors(tmp_path):
    p = write(tmp_path, EXAMPLE.read_text().replace('role = "client"',
                                                     'role = "client"\ncolour = "red"'))
    with pytest.raises(TopologyError, match="hosts.client: unknown key colour"):
        load_topology(p)


def test_wrong_types_are_named():
    with pytest.raises(TopologyError, match=r"hosts.a.interfaces\[0\].name: expected a string"):
        topology_from_dict({"hosts": {"a": {"role": "client", "interfaces": [
            {"name": 5, "segment": "lan"}]}}})
    with pytest.raises(TopologyError, match="service.port: expected an integer"):
        topology_from_dict({"hosts": {}, "service": {"vip": "192.0.2.1", "port": "80",
                                                     "director": "d", "real_servers": []}})


def test_missing_required_keys():
    with pytest.raises(TopologyError, match="topology: missing hosts"):
        topology_from_dict({})
    with pytest.raises(TopologyError, match="hosts.x: missing role"):
        topology_from_dict({"hosts": {"x": {}}})


def test_validation_runs_after_parsing(tmp_path):
    p = write(tmp_path, EXAMPLE.read_text().replace("192.0.2.101/24", "10.0.0.1/24"))
    with pytest.raises(TopologyError, match="outside the documentation ranges"):
        load_topology(p)


def test_lo_address_with_scope_and_weights():
    t = topology_from_dict({
        "segments": ["lan"],
        "hosts": {
            "d": {"role": "director", "interfaces": [
                {"name": "eth0", "segment": "lan", "addresses": ["192.0.2.2/24",
                                                                 "192.0.2.100/32"]}]},
            "r": {"role": "realserver", "interfaces": [
                {"name": "eth0", "segment": "lan", "addresses": ["192.0.2.3/24"]}],
                "lo": [{"cidr": "192.0.2.100/32", "scope": "host"}]},
        },
        "service": {"vip": "192.0.2.100", "port": 80, "director": "d",
                    "real_servers": [{"host": "r", "weight": 5}], "scheduler": "wrr"},
    })
    assert t.host("r").lo[0].scope == "host"
    assert t.service.real_servers[0].weight == 5


def test_to_dict_round_trip():
    from lab.model import topology_to_dict
    from lab.model.predict import RsConfig, topology_for

    for t in (default_dr(behind_router=True, persistence=30), load_topology(EXAMPLE),
              topology_for(RsConfig(vip_place="lan", scope="host"))):
        again = topology_from_dict(topology_to_dict(t))
        assert again == t

"""Property tests: any input gives a valid topology or one clear TopologyError, never a
traceback of another kind (hypothesis, no root)."""

import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.errors import TopologyError
from lab.model import Topology, load_topology, topology_from_dict, topology_to_dict
from lab.model.defaults import default_dr

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000),
                    st.text(max_size=20), st.sampled_from(
                        ["192.0.2.1/24", "192.0.2.100/32", "10.0.0.1/8", "2001:db8::1/64",
                         "lan", "eth0", "rs1", "realserver", "director", "client", "default",
                         "198.51.100.1", "rr", "udp", "net.ipv4.conf.all.arp_ignore"]))
values = st.recursive(scalars, lambda children: st.one_of(
    st.lists(children, max_size=4),
    st.dictionaries(st.sampled_from(
        ["name", "segments", "hosts", "service", "role", "interfaces", "segment", "addresses",
         "lo", "routes", "dst", "via", "dev", "sysctls", "vip", "port", "protocol",
         "scheduler", "director", "real_servers", "host", "weight", "cidr", "scope", "mtu",
         "waive", "rs1", "client", "persistence"]), children, max_size=5)), max_leaves=25)


def _one_clear_error_or_valid(data) -> None:
    try:
        t = topology_from_dict(data)
    except TopologyError as e:
        assert str(e).startswith("invalid topology: ")
        assert "\n" not in str(e)
        return
    assert isinstance(t, Topology)
    t.validate()


@settings(max_examples=400, deadline=None)
@given(values)
def test_arbitrary_data(data):
    _one_clear_error_or_valid(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_topologies(data):
    """Start from a valid topology and damage one field at a time."""
    d = topology_to_dict(default_dr(behind_router=data.draw(st.booleans())))
    host = data.draw(st.sampled_from(sorted(d["hosts"])))
    key = data.draw(st.sampled_from(["role", "interfaces", "lo", "routes", "sysctls"]))
    d["hosts"][host][key] = data.draw(values)
    if data.draw(st.booleans()):
        d["service"][data.draw(st.sampled_from(sorted(d["service"])))] = data.draw(values)
    _one_clear_error_or_valid(d)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_toml_text(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("t") / "t.toml"
    p.write_text(text)
    try:
        load_topology(p)
    except TopologyError as e:
        assert "\n" not in str(e)
    except tomllib.TOMLDecodeError:  # must have been wrapped
        raise AssertionError("TOML error escaped unwrapped") from None

"""lab.model.writer: a topology written as a file reads back as the same topology
(``load(dump(t)) == t``), whatever it holds. Pure: no root."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from lab.model import Topology, default_dr, load_topology, topology_from_dict
from lab.model.keepalived import keepalived_dr
from lab.model.writer import dump
from lab.scenarios.catalogue import REGISTRY

TOPOLOGIES: dict[str, Topology] = {
    "default": default_dr(),
    "behind-router": default_dr(rs=3, behind_router=True),
    "keepalived": keepalived_dr(rs=2),
    **{f"{name}-{v}": s.topology(v) for name, s in REGISTRY.items()
       for v in ("broken", "fixed")},
}


@pytest.mark.parametrize("name", sorted(TOPOLOGIES))
def test_dump_reads_back_as_the_same_topology(name: str, tmp_path: Path) -> None:
    t = TOPOLOGIES[name]
    text = dump(t)
    assert topology_from_dict(tomllib.loads(text)) == t
    # and as a file the user names (what `drlab up --topology` reads): whether its
    # keepalived configs may run programs is the reader's word, never the file's
    p = tmp_path / "t.toml"
    p.write_text(text)
    assert load_topology(p, allow_scripts=True) == replace(t, allow_scripts=True)


ONE = """
name = "one"
waive = ["vip-duplicate"]
segments = ["lan"]
[hosts.client]
role = "client"
interfaces = [{ name = "eth0", segment = "lan", addresses = ["192.0.2.10/24"], mtu = 9000 }]
[hosts.dir1]
role = "director"
label = "lvs-a.example"
interfaces = [{ name = "ens192", segment = "lan", addresses = ["192.0.2.2/24", "192.0.2.100/32"] }]
[hosts.web1]
role = "realserver"
label = "web-01.example"
represents = ["web-03.example"]
interfaces = [{ name = "eth0", segment = "lan", addresses = ["192.0.2.101/24"] },
              { name = "dummy0", kind = "dummy", addresses = ["192.0.2.100/32"] }]
lo = [{ cidr = "192.0.2.100/32", scope = "host" }]
routes = [{ dst = "default", via = "192.0.2.1" }]
sysctls = { "net.ipv4.conf.dummy0.arp_ignore" = 1 }
[service]
vip = "192.0.2.100"
port = 53
protocol = "udp"
director = "dir1"
real_servers = [{ host = "web1", listen = "vip" }]
"""


def test_dump_says_what_the_compact_form_leaves_implicit() -> None:
    """One service, a waiver, a dummy, a scope, a label, a listen mode, an MTU: each
    said, each read back (the layout of the file drlab import writes)."""
    t = topology_from_dict(tomllib.loads(ONE))
    out = dump(t)
    assert "[[services]]" in out and 'listen = "vip"' in out
    assert out.index("waive = ") < out.index("segments = ")
    assert 'kind = "dummy"' in out and "mtu = 9000" in out and 'scope = "host"' in out
    assert topology_from_dict(tomllib.loads(out)) == t

"""Several services per topology: the format, validation, what the roles load."""

from __future__ import annotations

import tomllib

import pytest

from lab.errors import TopologyError
from lab.model import load_topology, topology_from_dict, topology_to_dict
from lab.roles.director import nft_rules, restore_rules
from lab.roles.realserver import listeners

TWO = """
name = "two"
segments = ["lan"]
[hosts.client]
role = "client"
interfaces = [{ name = "eth0", segment = "lan", addresses = ["192.0.2.10/24"] }]
[hosts.dir1]
role = "director"
label = "lvs-a.example"
interfaces = [
  { name = "ens192", segment = "lan", addresses = ["192.0.2.2/24", "192.0.2.100/32",
                                                  "192.0.2.200/32"] },
]
[hosts.web1]
role = "realserver"
label = "web-01.example"
represents = ["web-03.example", "web-04.example"]
interfaces = [{ name = "eth0", segment = "lan", addresses = ["192.0.2.101/24"] },
              { name = "dummy0", kind = "dummy", addresses = ["192.0.2.100/32", "192.0.2.200/32"] }]
sysctls = { "net.ipv4.conf.dummy0.arp_ignore" = 1 }
[hosts.web2]
role = "realserver"
interfaces = [{ name = "eth0", segment = "lan", addresses = ["192.0.2.102/24"] }]
lo = ["192.0.2.100/32", "192.0.2.200/32"]
[[services]]
vip = "192.0.2.100"
port = 80
scheduler = "wlc"
director = "dir1"
persistence = 300
persistence_netmask = "255.255.255.0"
real_servers = [{ host = "web1", weight = 2 }, { host = "web2" }]
[[services]]
vip = "192.0.2.200"
port = 53
protocol = "udp"
director = "dir1"
real_servers = [{ host = "web1", listen = "vip" }, { host = "web2", listen = "rip" }]
[[services]]
vip = "192.0.2.100"
port = 443
director = "dir1"
fwmark = 7
extra_ports = [8443]
real_servers = [{ host = "web1", listen = "none" }, { host = "web2" }]
"""


def two():
    return topology_from_dict(tomllib.loads(TWO))


def test_several_services_load_and_round_trip():
    t = two()
    assert [s.key for s in t.services] == ["192.0.2.100:80/tcp", "192.0.2.200:53/udp",
                                           "fwmark 7 (192.0.2.100)"]
    assert t.service is t.services[0]
    assert t.host("web1").shown == "web-01.example" and t.host("web2").shown == "web2"
    assert t.host("web1").represents == ["web-03.example", "web-04.example"]
    assert [i.name for i in t.host("web1").dummies] == ["dummy0"]
    assert t.services[0].persistence_netmask == "255.255.255.0"
    assert topology_from_dict(topology_to_dict(t)) == t


def test_a_single_service_still_round_trips_as_service(tmp_path):
    p = tmp_path / "dr.toml"
    p.write_text(open("examples/dr.toml").read())
    d = topology_to_dict(load_topology(p))
    assert "service" in d and "services" not in d


def test_ipvsadm_restore_holds_every_service_of_the_director():
    rules = restore_rules(two())
    assert "-A -t 192.0.2.100:80 -s wlc -p 300 -M 255.255.255.0\n" in rules
    assert "-a -t 192.0.2.100:80 -r 192.0.2.101:80 -g -w 2\n" in rules
    assert "-A -u 192.0.2.200:53 -s rr\n" in rules
    assert "-a -f 7 -r 192.0.2.102 -g -w 1\n" in rules
    assert "daddr 192.0.2.100 tcp dport { 443, 8443 } meta mark set 7" in nft_rules(two())


def test_real_servers_listen_as_collected():
    socks = listeners(two())
    assert sorted(socks["web1"]) == [(53, "udp", 4, "192.0.2.200"), (80, "tcp", 4, None)]
    assert sorted(socks["web2"], key=str) == sorted(
        [(80, "tcp", 4, None), (53, "udp", 4, "192.0.2.102"), (443, "tcp", 4, None),
         (8443, "tcp", 4, None)], key=str)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(service=d["services"][0]), "give [service] (one) or [[services]]"),
    (lambda d: d["services"].append(dict(d["services"][0])), "the same service is defined twice"),
    (lambda d: d["services"][1]["real_servers"][0].update(listen="maybe"),
     "listen 'maybe' must be one of any, vip, rip, none"),
    (lambda d: d["services"][1].update(persistence_netmask="255.0.0.0"),
     "persistence_netmask needs persistence"),
    (lambda d: d["services"][0].update(persistence_netmask="255.0.255.0"), "is not a netmask"),
    (lambda d: d["hosts"]["web1"]["interfaces"][1].update(segment="lan"), "unknown key segment"),
    (lambda d: d["hosts"]["web1"]["interfaces"][1].update(kind="tun"), "must be veth"),
    (lambda d: d["hosts"]["web1"]["interfaces"][1].update(name="eth0"),
     "invalid or duplicate interface name"),
])
def test_bad_services_are_one_clear_error(edit, message):
    d = tomllib.loads(TWO)
    edit(d)
    with pytest.raises(TopologyError) as e:
        topology_from_dict(d)
    assert message in str(e.value)


def test_focused_keeps_the_hosts_and_puts_the_service_first():
    t = two()
    f = t.focused(t.services[1])
    assert f.service is t.services[1] and f.hosts is t.hosts and len(f.services) == 3

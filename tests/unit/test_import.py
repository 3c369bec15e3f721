"""drlab import: a collected cluster (synthetic `ip -j`, ipvsadm-save, ss, sysctl and
keepalived.conf files) -> a lab topology. Pure: no root."""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from pathlib import Path

import pytest

from lab.errors import TopologyError
from lab.model import topology_from_dict, topology_to_dict
from lab.model.anonymize import AddressMap, literals
from lab.model.collected import Imported, import_cluster, lab_name
from lab.model.writer import to_toml


def toml_data(imp: Imported) -> dict:
    """The twin as its file holds it (what drlab import writes)."""
    return topology_to_dict(imp.topology, full=True)


# -- a collected host, as scripts/collect writes it ------------------------------------

RS_SYSCTLS = {
    "net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2",
    "net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.conf.eth0.arp_announce": "2",
    "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "1",
    "net.ipv4.ip_forward": "0",
}
DIRECTOR_SYSCTLS = {
    "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.ip_forward": "1",
    "net.ipv4.vs.conntrack": "0", "net.ipv4.vs.conn_reuse_mode": "1",
    "net.ipv4.vs.expire_nodest_conn": "1",
}


def _addr_info(name: str, cidr: str, scope: str = "global") -> dict:
    i = ipaddress.ip_interface(cidr)
    d = {"family": "inet" if i.version == 4 else "inet6", "local": str(i.ip),
         "prefixlen": i.network.prefixlen}
    if i.version == 4 and i.network.prefixlen < 31 and name != "lo":
        d["broadcast"] = str(i.network.broadcast_address)
    d["scope"] = scope
    if i.version == 4:
        d["label"] = name
    d |= {"valid_life_time": 4294967295, "preferred_life_time": 4294967295}
    return d


def write_host(root: Path, name: str, ifaces: list[tuple], *, lo: tuple = (),
               routes: list[dict] | None = None, sysctls: dict | None = None,
               ipvs: str | None = None, listen: str | None = None,
               keepalived: str | None = None, dirname: str | None = None) -> Path:
    """``ifaces``: (ifname, kind or None, [cidr or (cidr, scope)], [extra flags])."""
    d = root / (dirname or name)
    d.mkdir(parents=True)
    addrs, links = [], []
    all_ifaces = [("lo", "loopback", ["127.0.0.1/8", *lo, ("::1/128", "host")], []),
                  *ifaces]
    for n, (ifname, kind, cidrs, *flags) in enumerate(all_ifaces, 1):
        is_lo = kind == "loopback"
        fl = (["LOOPBACK", "UP", "LOWER_UP"] if is_lo else
              ["BROADCAST", "NOARP", "UP", "LOWER_UP"] if kind == "dummy" else
              ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"])
        fl += [f for f in (flags[0] if flags else []) if f not in fl]
        mac = "00:00:00:00:00:00" if is_lo else f"52:54:00:00:{n:02x}:{len(name):02x}"
        base = {"ifindex": n, "ifname": ifname, "flags": fl, "mtu": 65536 if is_lo else 1500,
                "qdisc": "noqueue", "operstate": "UNKNOWN" if is_lo or kind == "dummy"
                else "UP", "group": "default", "txqlen": 1000,
                "link_type": "loopback" if is_lo else "ether", "address": mac,
                "broadcast": "00:00:00:00:00:00" if is_lo else "ff:ff:ff:ff:ff:ff"}
        info = [_addr_info(ifname, *(c if isinstance(c, tuple) else (c,)))
                for c in cidrs]
        if not is_lo and kind != "dummy" and cidrs:
            info.append(_addr_info(ifname, f"fe80::5054:ff:fe00:{n:x}/64", "link"))
        scope_host = [a for a in info if a["local"] in ("127.0.0.1",)]
        for a in scope_host:
            a["scope"] = "host"
        addrs.append(base | {"addr_info": info})
        link = base | {"promiscuity": 0, "allmulti": 0, "min_mtu": 68, "max_mtu": 65535}
        if kind not in (None, "loopback"):
            link["linkinfo"] = {"info_kind": kind}
        links.append(link)
    (d / "ip-addr.json").write_text(json.dumps(addrs, indent=2))
    (d / "ip-link.json").write_text(json.dumps(links))
    (d / "ip-route.json").write_text(json.dumps(routes or []))
    (d / "sysctl.txt").write_text("".join(f"{k} = {v}\n" for k, v in (sysctls or {}).items()))
    if ipvs is not None:
        (d / "ipvsadm-save.txt").write_text(ipvs)
    if listen is not None:
        (d / "listen.txt").write_text(listen)
    if keepalived is not None:
        (d / "keepalived.conf").write_text(keepalived)
    (d / "uname.txt").write_text("6.1.0-18-amd64\n")
    (d / "collect.txt").write_text(f"hostname = {name}\ndate = 2024-05-01T10:00:00Z\n")
    return d


def route(dst: str, dev: str = "eth0", via: str | None = None, kernel: bool = False) -> dict:
    r: dict = {"dst": dst}
    if via:
        r["gateway"] = via
    r["dev"] = dev
    if kernel:
        r |= {"protocol": "kernel", "scope": "link", "prefsrc": dst.split("/")[0]}
    r["flags"] = []
    return r


def listen_lines(*binds: tuple[str, str]) -> str:
    out = []
    for proto, local in binds:
        state = "LISTEN 0      511   " if proto == "tcp" else "UNCONN 0      0     "
        peer = "[::]:*" if local.startswith("[") else "0.0.0.0:*" if proto == "tcp" else "*:*"
        out.append(f"{proto}   {state}     {local:>24}      {peer:>16}")
    return "\n".join(out) + "\n"


# -- the doc-range cluster: 2 directors (keepalived) + 3 real servers + a monitor ------

VIP = "192.0.2.100"
IPVS = """-A -t 192.0.2.100:80 -s wlc -p 300 -M 255.255.255.0
-a -t 192.0.2.100:80 -r 192.0.2.101:80 -g -w 1
-a -t 192.0.2.100:80 -r 192.0.2.102:80 -g -w 2
-a -t 192.0.2.100:80 -r 192.0.2.103:80 -g -w 1
-a -t 192.0.2.100:80 -r 192.0.2.105:80 -g -w 1
-A -u 192.0.2.100:53 -s rr
-a -u 192.0.2.100:53 -r 192.0.2.101:53 -g -w 1
-a -u 192.0.2.100:53 -r 192.0.2.102:53 -g -w 1
-a -u 192.0.2.100:53 -r 192.0.2.103:53 -g -w 0
-a -u 192.0.2.100:53 -r 192.0.2.120:53 -m -w 1
"""


def keepalived_conf(me: str, state: str, prio: int, src: str, peer: str,
                    lan: str = "192.0.2", vip: str = VIP, plen: int = 24,
                    more_vips: str = "") -> str:
    reals = "\n".join(f"    real_server {lan}.{n} PORT {{\n        weight 1\n"
                      f"        TCP_CHECK {{\n            connect_timeout 1\n        }}\n    }}"
                      for n in (101, 102, 103))
    return f"""! Configuration File for keepalived on {me}
global_defs {{
    router_id {me}
    notification_email {{
        ops@corp.example.com
    }}
    smtp_server mail.corp.example.com
}}
vrrp_instance VI_1 {{
    state {state}
    interface eth0
    virtual_router_id 51
    priority {prio}
    unicast_src_ip {src}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {vip}/{plen} dev eth0   # the service address{more_vips}
    }}
}}
virtual_server {vip} 80 {{
    lb_algo wlc
    lb_kind DR
    protocol TCP
    persistence_timeout 300
    persistence_granularity 255.255.255.0
{reals.replace("PORT", "80")}
}}
"""


def cluster(root: Path, *, mon: bool = True) -> Path:
    gw = route("default", via="192.0.2.1")
    kern = route("192.0.2.0/24", kernel=True)
    write_host(root, "lvs-a.prod", [("eth0", None, ["192.0.2.2/24", "192.0.2.100/24"])],
               routes=[gw, kern], sysctls=DIRECTOR_SYSCTLS, ipvs=IPVS,
               keepalived=keepalived_conf("lvs-a", "MASTER", 150, "192.0.2.2", "192.0.2.3"),
               dirname="lvs-a")
    write_host(root, "lvs-b.prod", [("eth0", None, ["192.0.2.3/24"])],
               routes=[gw, kern], sysctls=DIRECTOR_SYSCTLS, ipvs=IPVS,
               keepalived=keepalived_conf("lvs-b", "BACKUP", 100, "192.0.2.3", "192.0.2.2"),
               dirname="lvs-b")
    # VIP on lo; listens on every address
    write_host(root, "web-01.prod", [("eth0", None, ["192.0.2.101/24"])],
               lo=["192.0.2.100/32"], routes=[gw, kern,
                                              route("10.9.0.0/16", "eth9", "10.1.1.1")],
               sysctls=RS_SYSCTLS,
               listen=listen_lines(("tcp", "0.0.0.0:80"), ("udp", "*:53"),
                                   ("tcp", "127.0.0.1:25")), dirname="web-01")
    # VIP on a dummy; listens on the VIP (tcp) and only on its RIP (udp)
    write_host(root, "web-02.prod", [("eth0", None, ["192.0.2.102/24"]),
                                     ("dummy0", "dummy", ["192.0.2.100/32"])],
               routes=[gw, kern], sysctls=RS_SYSCTLS | {"net.ipv4.conf.dummy0.arp_ignore": "1"},
               listen=listen_lines(("tcp", "192.0.2.100:80"), ("udp", "192.0.2.102:53")),
               dirname="web-02")
    # VIP on the LAN interface (bond0); [::] wildcard for tcp, nothing on udp 53
    write_host(root, "web-03.prod", [("bond0", "bond", ["192.0.2.103/24", "192.0.2.100/32"])],
               routes=[route("default", "bond0", "192.0.2.1")],
               sysctls={"net.ipv4.conf.all.arp_ignore": "1",
                        "net.ipv4.conf.bond0.arp_ignore": "1",
                        "net.ipv4.conf.bond0.arp_announce": "2", "net.ipv4.tcp_syncookies": "1"},
               listen=listen_lines(("tcp", "[::]:80")), dirname="web-03")
    if mon:  # neither: no IPVS table, no VIP
        write_host(root, "mon-01.prod", [("eth0", None, ["192.0.2.50/24"])], routes=[gw],
                   dirname="mon-01")
    return root


@pytest.fixture
def imported(tmp_path):
    return import_cluster([cluster(tmp_path / "c")])


def test_cluster_is_a_valid_topology(imported):
    d = toml_data(imported)
    assert tomllib.loads(to_toml(d)) == d
    t = topology_from_dict(d)
    assert [h.name for h in t.hosts] == ["client", "lvsa", "lvsb", "web01", "web02", "web03"]
    assert {h.name: h.role for h in t.hosts} == {
        "client": "client", "lvsa": "director", "lvsb": "director", "web01": "realserver",
        "web02": "realserver", "web03": "realserver"}
    assert imported.names == {"lvsa": "lvs-a.prod", "lvsb": "lvs-b.prod",
                              "web01": "web-01.prod", "web02": "web-02.prod",
                              "web03": "web-03.prod"}
    assert t.host("web01").label == "web-01.prod"
    assert d["segments"] == ["lan"]
    # everything is in the documentation ranges; web-02 (dummy0) and web-03 (bond0) both
    # hold the VIP on an interface, as in production
    assert d["waive"] == ["vip-duplicate"]
    assert any(n.startswith("the VIP 192.0.2.100 is on an interface (not lo) of several "
                            "hosts (web02, web03)") for n in imported.notes)


def test_services_with_persistence_netmask_weights_and_listen(imported):
    t = topology_from_dict(toml_data(imported))
    assert [s.key for s in t.services] == ["192.0.2.100:80/tcp", "192.0.2.100:53/udp"]
    web, dns = t.services
    assert (web.scheduler, web.persistence, web.persistence_netmask) == ("wlc", 300,
                                                                        "255.255.255.0")
    assert (dns.scheduler, dns.persistence) == ("rr", None)
    # both directors have the same table: one set of services, on the VRRP MASTER
    assert web.director == dns.director == "lvsa"
    assert [(r.host, r.weight, r.listen) for r in web.real_servers] == [
        ("web01", 1, "any"), ("web02", 2, "vip"), ("web03", 1, "any")]
    assert [(r.host, r.weight, r.listen) for r in dns.real_servers] == [
        ("web01", 1, "any"), ("web02", 1, "rip"), ("web03", 0, "none")]
    notes = "\n".join(imported.notes)
    assert "real server 192.0.2.105 of 192.0.2.100:80/tcp was not collected: left out" in notes
    assert "real server 192.0.2.120 of 192.0.2.100:53/udp forwards by masquerading" in notes


def test_vip_placements_routes_and_sysctls(imported):
    h = toml_data(imported)["hosts"]
    assert h["web01"]["lo"] == ["192.0.2.100/32"]
    assert h["web01"]["interfaces"] == [{"name": "eth0", "segment": "lan",
                                         "addresses": ["192.0.2.101/24"]}]
    assert h["web02"]["interfaces"][1] == {"name": "dummy0", "kind": "dummy",
                                           "addresses": ["192.0.2.100/32"]}
    assert h["web03"]["interfaces"] == [{"name": "bond0", "segment": "lan",
                                         "addresses": ["192.0.2.103/24", "192.0.2.100/32"]}]
    # connected routes and routes via interfaces the twin lacks are dropped
    assert h["web01"]["routes"] == [{"dst": "default", "via": "192.0.2.1"}]
    assert h["web03"]["routes"] == [{"dst": "default", "via": "192.0.2.1"}]
    assert h["web02"]["sysctls"] == RS_SYSCTLS | {"net.ipv4.conf.dummy0.arp_ignore": "1"}
    assert h["web03"]["sysctls"] == {"net.ipv4.conf.all.arp_ignore": "1",
                                     "net.ipv4.conf.bond0.arp_ignore": "1",
                                     "net.ipv4.conf.bond0.arp_announce": "2"}
    assert h["lvsa"]["sysctls"] == DIRECTOR_SYSCTLS
    assert not any("127.0.0.1" in str(x) or "fe80" in str(x) or "::1" in str(x)
                   for x in h.values())


def test_keepalived_places_the_vip_and_travels_with_the_director(imported):
    d = toml_data(imported)
    assert d["hosts"]["lvsa"]["interfaces"][0]["addresses"] == ["192.0.2.2/24"]
    assert set(d["keepalived"]) == {"lvsa", "lvsb"}
    assert "router_id lvs-a" in d["keepalived"]["lvsa"]
    assert any("left to keepalived" in n for n in imported.notes)


def test_lab_client_at_a_free_address(imported):
    c = toml_data(imported)["hosts"]["client"]
    assert c == {"role": "client", "label": "(lab client)", "interfaces": [
        {"name": "eth0", "segment": "lan", "addresses": ["192.0.2.254/24"]}]}
    assert any(n.startswith("lab client at 192.0.2.254/24 on lan") for n in imported.notes)


def test_client_routes_a_vip_outside_its_subnet(tmp_path):
    root = tmp_path / "c"
    write_host(root, "lb1", [("eth0", None, ["192.0.2.2/24"]), ("eth1", None,
                                                              ["198.51.100.7/32"])],
               ipvs="-A -t 198.51.100.7:443 -s rr\n-a -t 198.51.100.7:443 -r 192.0.2.11:443"
                    " -g -w 1\n")
    write_host(root, "app1", [("eth0", None, ["192.0.2.11/24"])], lo=["198.51.100.7/32"])
    imp = import_cluster([root])
    t = topology_from_dict(toml_data(imp))
    assert t.host("client").routes[0].dst == "198.51.100.7/32"
    assert t.host("client").routes[0].dev == "eth0"
    # an interface holding only a VIP outside every subnet is a segment of its own
    assert toml_data(imp)["segments"] == ["lan", "lan2"]


def test_left_out_host_and_role_override(tmp_path):
    root = cluster(tmp_path / "c")
    imp = import_cluster([root])
    assert "mon01" not in toml_data(imp)["hosts"]
    assert any(n.startswith("mon-01.prod is neither a director nor a real server")
               and "--role mon-01.prod=director or --role mon-01.prod=realserver" in n
               for n in imp.notes)
    imp2 = import_cluster([root], roles={"mon01": "realserver"})
    t = topology_from_dict(toml_data(imp2))
    assert t.host("mon01").role == "realserver" and t.host("mon01").label == "mon-01.prod"
    # by collected name too; a director without an IPVS table is a director
    imp3 = import_cluster([root], roles={"mon-01.prod": "director", "web-03.prod": "director"})
    t3 = topology_from_dict(toml_data(imp3))
    assert t3.host("mon01").role == "director" and t3.host("web03").role == "director"
    with pytest.raises(TopologyError, match=r"--role web-99=realserver: no collected host"):
        import_cluster([root], roles={"web-99": "realserver"})
    with pytest.raises(TopologyError, match="the role is director or realserver"):
        import_cluster([root], roles={"web-01.prod": "client"})


def test_each_host_dir_or_parent_dir(tmp_path):
    root = cluster(tmp_path / "c", mon=False)
    imp = import_cluster([root / "lvs-a", root / "web-01", root / "web-02"])
    t = topology_from_dict(toml_data(imp))
    assert [r.host for r in t.services[0].real_servers] == ["web01", "web02"]
    assert any("192.0.2.103 of 192.0.2.100:80/tcp was not collected" in n for n in imp.notes)


def test_lab_names():
    taken = {"client"}
    assert [lab_name(n, taken) for n in ("web-01.prod.example", "WEB_01", "01-db", "---",
                                         "client", "averyveryverylongname", "web01")] == [
        "web01", "web012", "h01db", "host", "client2", "averyveryv", "web013"]


def test_a_bare_director_gets_the_vip_on_its_lan(tmp_path):
    root = tmp_path / "c"
    write_host(root, "lb1", [("eth0", None, ["192.0.2.2/24"])],
               ipvs=f"-A -t {VIP}:80 -s rr\n-a -t {VIP}:80 -r 192.0.2.11:80 -g -w 1\n")
    write_host(root, "app1", [("eth0", None, ["192.0.2.11/24"])], lo=[f"{VIP}/32"])
    imp = import_cluster([root])
    t = topology_from_dict(toml_data(imp))
    assert [a.cidr for a in t.host("lb1").interfaces[0].addresses] == ["192.0.2.2/24",
                                                                       f"{VIP}/32"]
    assert any("holds the VIP 192.0.2.100 on no interface" in n for n in imp.notes)


def test_fwmark_service_needs_keepalived_to_say_vip_and_port(tmp_path):
    root = tmp_path / "c"
    ipvs = "-A -f 7 -s sh\n-a -f 7 -r 192.0.2.11:0 -g -w 1\n"
    write_host(root, "lb1", [("eth0", None, ["192.0.2.2/24", f"{VIP}/32"])], ipvs=ipvs)
    write_host(root, "app1", [("eth0", None, ["192.0.2.11/24"])], lo=[f"{VIP}/32"])
    with pytest.raises(TopologyError, match="no director or real server"):
        import_cluster([root / "app1"])
    imp = import_cluster([root], roles={"app1": "realserver"})
    assert "services" not in toml_data(imp)
    assert any("fwmark 7 on lb1: ipvsadm-save holds no VIP or ports" in n for n in imp.notes)
    topology_from_dict(toml_data(imp))


# -- folding -------------------------------------------------------------------------

def big_cluster(root: Path, n: int = 20) -> Path:
    ipvs = [f"-A -t {VIP}:80 -s rr"] + [f"-a -t {VIP}:80 -r 192.0.2.{10 + k}:80 -g -w "
                                        f"{3 if k == n else 1}" for k in range(1, n + 1)]
    write_host(root, "lb1", [("eth0", None, ["192.0.2.2/24", f"{VIP}/32"])],
               ipvs="\n".join(ipvs) + "\n", sysctls=DIRECTOR_SYSCTLS)
    for k in range(1, n + 1):
        write_host(root, f"web-{k:02d}", [("eth0", None, [f"192.0.2.{10 + k}/24"])],
                   lo=[f"{VIP}/32"], sysctls=RS_SYSCTLS,
                   routes=[route("default", via="192.0.2.1")],
                   listen=listen_lines(("tcp", "0.0.0.0:80")))
    return root


def test_fold_identical_real_servers(tmp_path):
    imp = import_cluster([big_cluster(tmp_path / "c", 21)])
    t = topology_from_dict(toml_data(imp))
    # web-21 has weight 3: a class of its own
    assert [r.host for r in t.service.real_servers] == ["web01", "web02", "web21"]
    assert t.host("web01").represents == [f"web-{k:02d}" for k in range(3, 12)]
    assert t.host("web02").represents == [f"web-{k:02d}" for k in range(12, 21)]
    assert not t.host("web21").represents
    [note] = [n for n in imp.notes if "fold" in n]
    assert note.startswith("21 real servers fold into 3 (2 classes of identical ones): "
                           "web-01, web-02 stand for 18 identical (web-03 … web-20)")
    assert "in no service of the twin" in note
    full = import_cluster([tmp_path / "c"], fold=False)
    assert len(topology_from_dict(toml_data(full)).service.real_servers) == 21
    assert not any("fold" in n for n in full.notes)


# -- anonymize -----------------------------------------------------------------------

A_VIP, B_VIP = "10.20.0.100", "10.30.0.100"


def private_cluster(root: Path) -> Path:
    ipvs = "".join(
        [f"-A -t {A_VIP}:80 -s wrr\n"]
        + [f"-a -t {A_VIP}:80 -r 10.20.{k}.11:80 -g -w 1\n" for k in (1, 2)]
        + [f"-A -t {B_VIP}:443 -s rr -p 60\n"]
        + [f"-a -t {B_VIP}:443 -r 10.20.{k}.11:443 -g -w 1\n" for k in (1, 2)])
    gw = route("default", via="10.20.0.1")
    for me, peer, state in (("lvs-a", "3", "MASTER"), ("lvs-b", "2", "BACKUP")):
        own = "2" if me == "lvs-a" else "3"
        conf = keepalived_conf(me, state, 150 if state == "MASTER" else 100, f"10.20.0.{own}",
                               f"10.20.0.{peer}", lan="10.20.1", vip=A_VIP, plen=16,
                               more_vips=f"\n        {B_VIP}/32 dev eth2")
        conf += f"# {me}.corp.example talks to web-01.corp.example via 172.16.5.1\n"
        write_host(root, f"{me}.corp.example", [
            ("eth0", None, [f"10.20.0.{own}/16"]), ("eth1", "vlan", [f"172.16.5.{own}/24"]),
            ("eth2", None, [f"{B_VIP}/32"])],
            routes=[gw, route("192.168.0.0/16", "eth1", "172.16.5.1")],
            sysctls=DIRECTOR_SYSCTLS, ipvs=ipvs, keepalived=conf, dirname=me)
    for k in (1, 2):
        write_host(root, f"web-{k:02d}.corp.example", [
            ("eth0", None, [f"10.20.{k}.11/16"]), ("eth1", None, [f"172.16.5.{10 + k}/24"])],
            lo=[f"{A_VIP}/32", f"{B_VIP}/32"], routes=[gw], sysctls=RS_SYSCTLS,
            listen=listen_lines(("tcp", "0.0.0.0:80"), ("tcp", "0.0.0.0:443")),
            dirname=f"web-{k:02d}")
    return root


def _ifaddrs(topology: dict, host: str) -> list[ipaddress.IPv4Interface]:
    h = topology["hosts"][host]
    return [ipaddress.ip_interface(a if isinstance(a, str) else a["cidr"])
            for i in h.get("interfaces", []) for a in i["addresses"]]


def test_anonymize_keeps_relations_and_leaks_nothing(tmp_path):
    root = private_cluster(tmp_path / "c")
    plain = import_cluster([root])
    anon = import_cluster([root], anonymize=True)
    assert "any-address" in toml_data(plain)["waive"]
    assert "waive" not in toml_data(anon)
    t = topology_from_dict(toml_data(anon))
    assert [h.name for h in t.hosts] == ["client", "director1", "director2", "rs1", "rs2"]
    assert [h.label for h in t.hosts] == ["(lab client)", "director1", "director2", "rs1",
                                          "rs2"]
    assert anon.names == {"director1": "lvs-a.corp.example", "director2": "lvs-b.corp.example",
                          "rs1": "web-01.corp.example", "rs2": "web-02.corp.example"}

    # the same interfaces in the same order, address by address
    back = {v: k for k, v in plain.names.items()} | {"client": "client"}
    fwd = {"client": "client"} | {k: back[v] for k, v in anon.names.items()}
    pairs = []
    for new_name, old_name in fwd.items():
        old, new = _ifaddrs(toml_data(plain), old_name), _ifaddrs(toml_data(anon), new_name)
        assert len(old) == len(new)
        pairs += list(zip(old, new, strict=True))
    for o, n in pairs:
        assert any(n.ip in d for d in (ipaddress.ip_network("192.0.2.0/24"),
                                       ipaddress.ip_network("198.51.100.0/24"),
                                       ipaddress.ip_network("203.0.113.0/24")))
        if o.network.prefixlen == 24:  # a /24 keeps its prefix and host numbers
            assert n.network.prefixlen == 24 and str(n.ip).split(".")[3] == str(o.ip).split(
                ".")[3]
    for (o1, n1), (o2, n2) in ((a, b) for a in pairs for b in pairs):
        assert (o1.ip in o2.network) == (n1.ip in n2.network), (o1, o2, n1, n2)
        assert (o1.ip == o2.ip) == (n1.ip == n2.ip)
    vips = [(ipaddress.ip_address(s["vip"]), ipaddress.ip_address(a["vip"]))
            for s, a in zip(toml_data(plain)["services"], toml_data(anon)["services"],
                            strict=True)]
    lans = [(o.network, n.network) for o, n in pairs if o.network.prefixlen < 32]
    for ov, nv in vips:
        for on, nn in lans:
            assert (ov in on) == (nv in nn)
    assert any("prefix shrank to /24" in n for n in anon.notes)
    # the client's route to the VIP outside the LAN is mapped with it
    assert t.host("client").routes[0].dst == f"{t.services[1].vip}/32"

    # the CLI writes the notes into the file as comments: they leak nothing either
    text = "".join(f"# {n}\n" for n in anon.notes) + to_toml(toml_data(anon))
    assert any("left to keepalived" in n and "director1" in n for n in anon.notes)
    originals = set()
    for p in root.rglob("*"):
        if p.is_file():
            originals |= {str(ip) for ip, _ in literals(p.read_text())
                          if not (ip.is_loopback or ip.is_link_local or ip.is_multicast
                                  or str(ip).startswith("255.") or ip.is_unspecified)}
    assert {"10.20.0.2", "172.16.5.1", B_VIP} <= originals
    for ip in originals:
        assert not re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", text), ip
    for name in ("lvs-a", "lvs-b", "web-01", "web-02", "corp.example", "ops@"):
        assert name not in text.lower(), name
    ka = toml_data(anon)["keepalived"]["director1"]
    assert "router_id director1" in ka and "persistence_granularity 255.255.255.0" in ka
    assert "root@example.org" in ka and "smtp_server 127.0.0.1" in ka


def test_anonymize_splits_the_ranges_when_subnets_do_not_fit():
    m = AddressMap()
    for n in range(5):
        m.add_interface(f"10.{n}.0.7/24")
    m.add(ipaddress.ip_address("10.99.0.1"))  # in no subnet
    m.build()
    nets = {ipaddress.ip_interface(m.cidr(f"10.{n}.0.7/24")).network for n in range(5)}
    assert len(nets) == 5 and all(n.prefixlen == 25 for n in nets)
    assert not any(m.ip(ipaddress.ip_address("10.99.0.1")) in n for n in nets)
    assert any("do not fit the three documentation /24s as they are: the widest get a /25"
               in n for n in m.notes)
    # the pool of addresses in no subnet takes only what it needs
    assert ipaddress.ip_interface(m.cidr("10.99.0.1/32")).ip in ipaddress.ip_network(
        "203.0.113.128/25")


def test_anonymize_ipv6_keeps_interface_ids():
    m = AddressMap()
    m.add_interface("fd00:1:2:3::a:b/64")
    m.add_interface("fd00:9::1/64")
    m.build()
    assert m.cidr("fd00:1:2:3::a:b/64") == "2001:db8:1::a:b/64"
    assert m.cidr("fd00:9::1/64") == "2001:db8:2::1/64"
    assert m.text("unicast_peer fd00:9::1\nvirtual fd00:1:2:3::a:b/64 x") == (
        "unicast_peer 2001:db8:2::1\nvirtual 2001:db8:1::a:b/64 x")


# -- bad input: one line naming the file and line ---------------------------------------

def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("fname,text,expect", [
    ("ipvsadm-save.txt", f"-A -t {VIP}:80 -s rr\n-a -t {VIP}:80 -r 192.0.2.11:80 -g -w 1\n"
                         f"-a -t {VIP}:80 -r 192.0.2.12:80 -g --foo\n",
     r"web-01/ipvsadm-save.txt:3: unknown option --foo$"),
    ("ipvsadm-save.txt", f"-A -t {VIP}:80 -s magic\n", r"ipvsadm-save.txt:1: unknown scheduler"),
    ("ipvsadm-save.txt", f"-a -t {VIP}:80 -r 192.0.2.11:80 -g\n",
     r"ipvsadm-save.txt:1: real server of a service not added before"),
    ("ipvsadm-save.txt", "\n-A -t 192.0.2.300:80 -s rr\n",
     r"ipvsadm-save.txt:2: '192.0.2.300' is not an IP address"),
    ("ipvsadm-save.txt", "-C\n", r"ipvsadm-save.txt:1: expected -A or -a"),
    ("sysctl.txt", "net.ipv4.ip_forward = 1\nnet.ipv4.conf.all.arp_ignore 1\n",
     r"web-01/sysctl.txt:2: expected `key = value`"),
    ("ip-addr.json", '[\n  {"ifindex": 1,\n   "ifname": "lo",,\n  }\n]\n',
     r"web-01/ip-addr.json:3: not valid JSON"),
    ("ip-route.json", '{"dst": "default"}', r"web-01/ip-route.json:1: expected a JSON list"),
    ("keepalived.conf", "vrrp_instance V {\n", r"web-01/keepalived.conf:1: '\{' opened here"),
])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, fname, text, expect):
    d = write_host(tmp_path / "c", "web-01", [("eth0", None, ["192.0.2.11/24"])])
    (d / fname).write_text(text)
    with pytest.raises(TopologyError) as e:
        import_cluster([tmp_path / "c"])
    assert re.search(expect, _one_line(e)), str(e.value)


def test_missing_host_file_and_no_hosts(tmp_path):
    d = write_host(tmp_path / "c", "web-01", [("eth0", None, ["192.0.2.11/24"])])
    (d / "ip-addr.json").unlink()
    with pytest.raises(TopologyError) as e:
        import_cluster([tmp_path / "c"])
    assert re.search(r"c/web-01/ip-addr.json: missing", _one_line(e))
    (tmp_path / "empty").mkdir()
    with pytest.raises(TopologyError) as e:
        import_cluster([tmp_path / "empty"])
    assert re.search(r"empty: no collected hosts", _one_line(e))
    with pytest.raises(TopologyError) as e:
        import_cluster([tmp_path / "nope"])
    assert re.search(r"nope: no such directory", _one_line(e))


def test_missing_optional_files_are_notes(tmp_path):
    root = big_cluster(tmp_path / "c", 2)
    for f in ("listen.txt", "ip-link.json", "sysctl.txt"):
        (root / "web-01" / f).unlink()
    imp = import_cluster([root])
    t = topology_from_dict(toml_data(imp))
    assert {r.listen for r in t.service.real_servers} == {"any"}
    notes = "\n".join(imp.notes)
    assert "no listen.txt from web-01: their services count as listening on any address" in notes
    assert "no ip-link.json from web-01" in notes and "no sysctl.txt from web-01" in notes


# -- TOML ----------------------------------------------------------------------------

def test_to_toml_round_trips(imported):
    d = dict(toml_data(imported), keepalived={"a": "x {\n  y 'q' \"z\"\n}\n", "b": "it's'",
                                            "c": "tab\there\n'''\n"})
    text = to_toml(d)
    assert tomllib.loads(text) == d
    assert "[[services]]" in text and "[hosts.web02.sysctls]" in text
    assert '"net.ipv4.conf.all.arp_ignore" = "1"' in text


def test_ipv6_fwmark_from_keepalived_and_options_not_reproduced(tmp_path):
    root = tmp_path / "c"
    v6vip = "2001:db8::100"
    ipvs = (f"-A -t [{v6vip}]:80 -s mh -b mh-fallback,mh-port\n"
            f"-a -t [{v6vip}]:80 -r [2001:db8::11]:80 -g -w 1 -x 100 -y 10\n"
            "-A -f 7 -s sh --pe sip\n-a -f 7 -r 192.0.2.11:0 -g -w 1\n"
            "-A -f 8 -6 -s rr\n-a -f 8 -6 -r [2001:db8::11]:0 -g -w 1\n")
    ka = ("vrrp_instance V {\n state MASTER\n interface eth0\n virtual_router_id 1\n"
          " virtual_ipaddress {\n  192.0.2.100/32\n  2001:db8::100/128\n }\n}\n"
          "virtual_server fwmark 7 {\n lb_kind DR\n real_server 192.0.2.11 8080 {\n }\n}\n")
    write_host(root, "lb1", [("eth0", None, ["192.0.2.2/24", "2001:db8::2/64"])],
               ipvs=ipvs, keepalived=ka)
    write_host(root, "app1", [("eth0", None, ["192.0.2.11/24", "2001:db8::11/64"])],
               lo=[f"{VIP}/32", f"{v6vip}/128"],
               listen=listen_lines(("tcp", "[::]:80"), ("tcp", "192.0.2.11:8080")))
    imp = import_cluster([root])
    t = topology_from_dict(toml_data(imp))
    assert [s.key for s in t.services] == ["[2001:db8::100]:80/tcp", "fwmark 7 (192.0.2.100)"]
    assert [r.listen for s in t.services for r in s.real_servers] == ["any", "rip"]
    notes = "\n".join(imp.notes)
    assert "fwmark 7 on lb1: VIP 192.0.2.100 and port 8080 taken from" in notes
    assert "fwmark 8 on lb1: ipvsadm-save holds no VIP or ports" in notes
    assert "scheduler flags mh-fallback,mh-port is not reproduced" in notes
    assert "persistence engine sip is not reproduced" in notes
    assert t.host("client").interfaces[0].addresses[1].cidr == "2001:db8::fe/64"


def test_a_large_cluster_is_quick(tmp_path):
    import time

    root = big_cluster(tmp_path / "c", 150)
    start = time.monotonic()
    imp = import_cluster([root])
    assert time.monotonic() - start < 10
    assert len(topology_from_dict(toml_data(imp)).service.real_servers) == 3
    topology_from_dict(toml_data(import_cluster([root], anonymize=True, fold=False)))


def test_keepalived_director_without_ipvsadm_save(tmp_path):
    root = cluster(tmp_path / "c", mon=False)
    for d in ("lvs-a", "lvs-b"):
        (root / d / "ipvsadm-save.txt").unlink()
    imp = import_cluster([root])
    t = topology_from_dict(toml_data(imp))
    [svc] = t.services
    assert (svc.key, svc.scheduler, svc.persistence, svc.persistence_netmask, svc.director) == (
        "192.0.2.100:80/tcp", "wlc", 300, "255.255.255.0", "lvsa")
    assert [r.host for r in svc.real_servers] == ["web01", "web02", "web03"]


def test_literals_in_text():
    text = ("a 10.30.0.100:443/tcp [2001:db8::1]:80 fd00::1/64 1.2.3.4/24, 12:30:45 "
            "00:11:22:33:44:55 std::x ::ffff:10.0.0.1 1.2.3.4.5 2001:db8::5. 10.0.0.1.")
    assert [(str(ip), p) for ip, p in literals(text)] == [
        ("10.30.0.100", None), ("2001:db8::1", None), ("fd00::1", 64), ("1.2.3.4", 24),
        ("::ffff:a00:1", None), ("2001:db8::5", None), ("10.0.0.1", None)]


# -- scripts in a handed-in keepalived.conf ---------------------------------------------

SCRIPTS = """vrrp_script chk_haproxy {
    script "/usr/local/bin/check-haproxy --token s3cr3t"
    weight -30
}
"""


def scripted_cluster(root: Path) -> Path:
    cluster(root, mon=False)
    for me in ("lvs-a", "lvs-b"):
        p = root / me / "keepalived.conf"
        text = SCRIPTS + p.read_text().replace(
            "    priority", '    notify_master "/usr/local/bin/failover.sh master"\n'
            "    track_script {\n        chk_haproxy\n    }\n    priority")
        p.write_text(text)
    return root


def test_import_strips_scripts_and_names_each_by_file_and_line(tmp_path):
    root = scripted_cluster(tmp_path / "c")
    imp = import_cluster([root])
    for text in toml_data(imp)["keepalived"].values():
        assert "failover.sh" not in text and "check-haproxy" not in text
        assert "track_script" not in text and "vrrp_script" not in text
        assert "priority" in text and "virtual_ipaddress" in text
    src = root / "lvs-a" / "keepalived.conf"
    lines = src.read_text().splitlines()
    n_notify = next(k for k, x in enumerate(lines, 1) if "notify_master" in x)
    assert f"{src}:{n_notify}: notify_master removed: no action when the VRRP instance or " \
           "group changes state (--allow-scripts keeps it)" in imp.notes
    assert f"{src}:1: vrrp_script removed" in "\n".join(imp.notes)
    assert [(s.source, s.line, s.keyword) for s in imp.stripped][:3] == [
        (str(src), 1, "vrrp_script"), (str(src), n_notify, "notify_master"),
        (str(src), n_notify + 1, "track_script")]
    # the output runs no script either: not in the TOML, not in its comments
    out = to_toml(toml_data(imp))
    assert "failover.sh" not in out and "check-haproxy" not in out
    # opted in: the file as it is
    mine = import_cluster([root], allow_scripts=True)
    assert all("failover.sh" in t and "check-haproxy" in t
               for t in toml_data(mine)["keepalived"].values())
    assert mine.stripped == [] and not any("removed" in n for n in mine.notes)
    with pytest.raises(TopologyError, match="--anonymize removes every script"):
        import_cluster([root], anonymize=True, allow_scripts=True)


def test_a_topology_file_runs_no_script_unless_allowed(tmp_path):
    from lab.model import load_topology
    from lab.roles import up

    data = toml_data(import_cluster([scripted_cluster(tmp_path / "c")], allow_scripts=True))
    path = tmp_path / "cluster.toml"
    path.write_text(to_toml(data))  # an old cluster.toml, written before scripts were stripped
    notes: list[str] = []
    t = load_topology(path, notes=notes)
    assert not t.allow_scripts
    assert all("failover.sh" not in c and "check-haproxy" not in c for c in t.keepalived.values())
    toml_lines = t.keepalived["lvsa"]  # (the stripped text)
    assert "priority 150" in toml_lines
    assert any(n.startswith(f"{path} [keepalived.lvsa]:") and "notify_master removed" in n
               for n in notes)
    assert len(notes) == 6  # vrrp_script, notify_master, track_script on each director
    t = load_topology(path, allow_scripts=True)
    assert t.allow_scripts and "failover.sh" in t.keepalived["lvsa"]
    # a file cannot opt itself in
    with pytest.raises(TopologyError, match="unknown key allow_scripts"):
        topology_from_dict({**data, "allow_scripts": True})
    # defence in depth: a topology that bypassed the loader is refused before anything is
    # built (no root needed to see it: nothing runs)
    raw = topology_from_dict(data)
    with pytest.raises(TopologyError, match=r"keepalived\.lvsa:1: vrrp_script would run on "
                                            r"the lab's machine as root"):
        up(raw)


def test_cli_import_strips_by_default_and_allow_scripts_opts_in(tmp_path, capsys):
    from lab.cli import main

    root = scripted_cluster(tmp_path / "c")
    out = tmp_path / "cluster.toml"
    assert main(["import", str(root), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "failover.sh" not in out.read_text()
    assert f"drlab import: {root / 'lvs-a' / 'keepalived.conf'}:" in err and \
        "notify_master removed" in err
    assert main(["import", str(root), "-o", str(out), "--allow-scripts"]) == 0
    assert "failover.sh" in out.read_text() and "removed" not in capsys.readouterr().err
    assert main(["import", str(root), "-o", str(tmp_path / "x.toml"), "--anonymize",
                 "--allow-scripts"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--anonymize removes every script" in err
    assert not (tmp_path / "x.toml").exists()

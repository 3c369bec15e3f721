"""A collected DR cluster at scale, as ``scripts/collect`` writes it (issue #27, item 4).

:func:`write_cluster` writes, into ``root``, one directory per host with the files
``scripts/collect`` writes (``ip -j addr show``, ``ip -j -d link show``, ``ip -j route
show``, ``ip -j -6 route show``, the DR sysctls as ``sysctl`` prints them, ``ss
-Hltnu``, ``ipvsadm-save -n``, ``keepalived.conf``, ``uname.txt``, ``collect.txt``,
``skipped.txt``) for a keepalived pair of directors and ``realservers`` real servers
with ``services`` TCP services:

* the VIPs are consecutive from 198.18.0.1 (RFC 2544's benchmarking range,
  198.18.0.0/15: 5,000 addresses do not fit in the documentation ranges);
* the MASTER director holds every VIP on its LAN interface (keepalived's
  ``virtual_ipaddress``), the BACKUP none; both have the whole IPVS table (keepalived's
  ``virtual_server`` blocks load it on both);
* each real server holds every VIP on ``lo`` (/32), with arp_ignore=1 and
  arp_announce=2 on ``all``, and listens on 0.0.0.0:80;
* the LAN is 192.0.2.0/24 (the directors .2 and .3, the real servers from .11).

Run it by hand: ``python tests/gen_collected.py DIR --services 5000``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
from pathlib import Path

#: The first VIP (RFC 2544's benchmarking range).
FIRST_VIP = ipaddress.IPv4Address("198.18.0.1")
LAN = "192.0.2"
KERNEL = "6.1.0-56-amd64"
_FOREVER = 4294967295
_CONF_KEYS = {  # key -> (all, default, per interface), as a DR real server has them
    "accept_local": (0, 0, 0), "accept_redirects": (0, 1, 1), "arp_accept": (0, 0, 0),
    "arp_announce": (2, 0, 0), "arp_filter": (0, 0, 0), "arp_ignore": (1, 0, 0),
    "forwarding": (0, 0, 0), "proxy_arp": (0, 0, 0), "rp_filter": (0, 0, 0),
    "send_redirects": (0, 1, 1), "shared_media": (1, 1, 1),
}
_VS_KEYS = {"am_droprate": 10, "conn_reuse_mode": 1, "conntrack": 0, "expire_nodest_conn": 0,
            "expire_quiescent_template": 0, "run_estimation": 1, "schedule_icmp": 0,
            "sloppy_tcp": 0, "snat_reroute": 1}


def vips(services: int) -> list[str]:
    """The ``services`` VIPs, in order."""
    return [str(FIRST_VIP + k) for k in range(services)]


def _addr(ifname: str, cidr: str, scope: str = "global") -> dict[str, object]:
    i = ipaddress.ip_interface(cidr)
    return {"family": "inet" if i.version == 4 else "inet6", "local": str(i.ip),
            "prefixlen": i.network.prefixlen, "scope": scope, "label": ifname,
            "valid_life_time": _FOREVER, "preferred_life_time": _FOREVER}


def _links(index: int, lan_addrs: list[str], lo_addrs: list[str]) -> tuple[str, str]:
    """(ip-addr.json, ip-link.json) of a host with ``lo`` and one veth ``eth0``."""
    mac = f"02:d1:00:00:02:{index:02x}"
    lo = {"ifindex": 1, "ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"],
          "mtu": 65536, "qdisc": "noqueue", "operstate": "UNKNOWN", "group": "default",
          "txqlen": 1000, "link_type": "loopback", "address": "00:00:00:00:00:00",
          "broadcast": "00:00:00:00:00:00"}
    eth = {"ifindex": 2, "link_index": 4, "ifname": "eth0",
           "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "mtu": 1500,
           "qdisc": "noqueue", "operstate": "UP", "group": "default", "txqlen": 1000,
           "link_type": "ether", "address": mac, "broadcast": "ff:ff:ff:ff:ff:ff",
           "link_netnsid": 0}
    addr = [
        {**lo, "addr_info": [_addr("lo", "127.0.0.1/8", "host")]
         + [_addr("lo", f"{a}/32") for a in lo_addrs]},
        {**eth, "addr_info": [_addr("eth0", a) for a in lan_addrs]},
    ]
    link = [{**lo, "linkmode": "DEFAULT", "promiscuity": 0},
            {**eth, "linkmode": "DEFAULT", "promiscuity": 0,
             "linkinfo": {"info_kind": "veth"}}]
    return json.dumps(addr, separators=(",", ":")), json.dumps(link, separators=(",", ":"))


def _sysctls(director: bool) -> str:
    lines = []
    for dev, col in (("all", 0), ("default", 1), ("eth0", 2), ("lo", 2)):
        for key, values in _CONF_KEYS.items():
            v = values[col]
            if director and key in ("arp_ignore", "arp_announce"):
                v = 0
            lines.append(f"net.ipv4.conf.{dev}.{key} = {v}")
    lines.append(f"net.ipv4.ip_forward = {int(director)}")
    if director:
        lines += [f"net.ipv4.vs.{k} = {v}" for k, v in _VS_KEYS.items()]
    for dev in ("all", "default", "eth0", "lo"):
        lines += [f"net.ipv6.conf.{dev}.disable_ipv6 = 0",
                  f"net.ipv6.conf.{dev}.forwarding = 0"]
    return "\n".join(lines) + "\n"


def _ipvsadm(vs: list[str], rips: list[str]) -> str:
    lines = []
    for k, v in enumerate(vs):
        lines.append(f"-A -t {v}:80 -s wlc")
        lines += [f"-a -t {v}:80 -r {r}:80 -g -w {1 + (k + j) % 3}" for j, r in enumerate(rips)]
    return "\n".join(lines) + "\n"


def _keepalived(state: str, me: str, peer: str, vs: list[str], rips: list[str]) -> str:
    out = [
        "global_defs {", f"    router_id {me}", "}", "",
        "vrrp_instance VI_1 {", f"    state {state}", "    interface eth0",
        "    virtual_router_id 51", f"    priority {150 if state == 'MASTER' else 100}",
        "    advert_int 1", f"    unicast_src_ip {me}", "    unicast_peer {",
        f"        {peer}", "    }", "    virtual_ipaddress {",
        *(f"        {v}/32 dev eth0" for v in vs), "    }", "}", "",
    ]
    for k, v in enumerate(vs):
        out += [f"virtual_server {v} 80 {{", "    delay_loop 6", "    lb_algo wlc",
                "    lb_kind DR", "    protocol TCP"]
        for j, r in enumerate(rips):
            out += [f"    real_server {r} 80 {{", f"        weight {1 + (k + j) % 3}",
                    "        TCP_CHECK {", "            connect_timeout 2", "        }",
                    "    }"]
        out += ["}", ""]
    return "\n".join(out)


def _host(root: Path, name: str, files: dict[str, str]) -> None:
    d = root / name
    d.mkdir(mode=0o700)
    for fname, text in files.items():
        (d / fname).write_text(text)
    (d / "uname.txt").write_text(KERNEL + "\n")
    (d / "collect.txt").write_text(f"collected_at = 2026-12-03T00:00:00Z\nhostname = {name}\n"
                                   "collect_version = 1\n")


def write_cluster(root: Path, services: int, *, realservers: int = 3) -> None:
    """A collected DR cluster of two directors and ``realservers`` real servers with
    ``services`` TCP services in ``root`` (an existing directory; see above)."""
    vs = vips(services)
    rips = [f"{LAN}.{11 + r}" for r in range(realservers)]
    table = _ipvsadm(vs, rips)
    directors = [("lvs1.example.net", "MASTER", f"{LAN}.2", f"{LAN}.3"),
                 ("lvs2.example.net", "BACKUP", f"{LAN}.3", f"{LAN}.2")]
    for k, (name, state, me, peer) in enumerate(directors):
        held = vs if state == "MASTER" else []
        addr, link = _links(k + 1, [f"{me}/24", *(f"{v}/32" for v in held)], [])
        _host(root, name, {
            "ip-addr.json": addr, "ip-link.json": link,
            "ip-route.json": json.dumps([{"dst": f"{LAN}.0/24", "dev": "eth0",
                                          "protocol": "kernel", "scope": "link",
                                          "prefsrc": me, "flags": []}]),
            "ip6-route.json": "[]", "sysctl.txt": _sysctls(True), "ipvsadm-save.txt": table,
            "listen.txt": "", "keepalived.conf": _keepalived(state, me, peer, vs, rips),
        })
    for r, rip in enumerate(rips):
        addr, link = _links(11 + r, [f"{rip}/24"], vs)
        _host(root, f"web{r + 1}.example.net", {
            "ip-addr.json": addr, "ip-link.json": link,
            "ip-route.json": json.dumps([{"dst": f"{LAN}.0/24", "dev": "eth0",
                                          "protocol": "kernel", "scope": "link",
                                          "prefsrc": rip, "flags": []},
                                         {"dst": "default", "gateway": f"{LAN}.1",
                                          "dev": "eth0", "flags": []}]),
            "ip6-route.json": "[]", "sysctl.txt": _sysctls(False),
            "listen.txt": "tcp LISTEN 0      511    0.0.0.0:80 0.0.0.0:*\n",
            "skipped.txt": "ipvsadm-save.txt: no IPVS here (/proc/net/ip_vs absent; "
                           "not loading it)\nkeepalived.conf: /etc/keepalived/keepalived.conf "
                           "not found\n",
        })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path, help="an empty or new directory")
    ap.add_argument("--services", type=int, default=5000)
    ap.add_argument("--realservers", type=int, default=3)
    args = ap.parse_args()
    args.dir.mkdir(mode=0o700, exist_ok=True)
    write_cluster(args.dir, args.services, realservers=args.realservers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

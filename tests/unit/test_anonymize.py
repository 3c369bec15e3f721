"""drlab import --anonymize leaks nothing: a cluster built with distinctive values in
every place the collection carries them (host names, MACs and the EUI-64 addresses
made from them, VLAN interface names, keepalived secrets, check URLs, instance and
group names, script paths, skipped.txt paths, kernel builds, addresses), imported
through the CLI; the whole output (the TOML, its comments, stdout, stderr) is searched
for every original value."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path

from test_import import DIRECTOR_SYSCTLS, RS_SYSCTLS, listen_lines, route, write_host

from lab.cli import main
from lab.model import topology_from_dict
from lab.model.anonymize import literals

VIP = "10.77.40.80"
MACS = {"zeta-lb-7731": "8c:dc:d4:a1:b2:c3", "zeta-lb-7732": "8c:dc:d4:a1:b2:c4",
        "quux-web-4401": "3c:ec:ef:5a:6b:7c", "quux-web-4402": "3c:ec:ef:5a:6b:7d"}


def eui64(prefix: str, mac: str) -> str:
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 2, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    net = ipaddress.ip_network(prefix)
    return str(net.network_address + int.from_bytes(iid, "big")) + f"/{net.prefixlen}"


def keepalived_conf(me: str, state: str, prio: int, own: str, peer: str) -> str:
    return f"""! acme production, owner ops-zeta@acme-internal.net
global_defs {{
    router_id ZETA_RID_{me.upper().replace("-", "_")}
    lvs_sync_daemon bond0.3107 VI_ACME_FRONT id 119
    notification_email {{
        ops-zeta@acme-internal.net
    }}
    notification_email_from keepalived@{me}.acme-internal.net
    smtp_server smtp.acme-internal.net
    startup_script /opt/acme/sbin/zeta-marks.sh
}}
vrrp_script chk_acme_haproxy {{
    script "/opt/acme/bin/check-haproxy-zeta --token 0xDEADC0FFEE"
    weight -25
}}
vrrp_sync_group VG_ACME_EDGE {{
    group {{
        VI_ACME_FRONT
        VI_ACME_BACK
    }}
    notify_master "/opt/acme/bin/failover-zeta.sh master"
}}
vrrp_instance VI_ACME_FRONT {{
    state {state}
    interface bond0.3107
    virtual_router_id 117
    priority {prio}
    unicast_src_ip {own}
    unicast_peer {{
        {peer}
    }}
    authentication {{
        auth_type PASS
        auth_pass Xq9zT7pw
    }}
    track_interface {{
        bond0
    }}
    track_script {{
        chk_acme_haproxy
    }}
    virtual_ipaddress {{
        {VIP}/32 dev bond0.3107 label bond0.3107:acmevip
    }}
}}
vrrp_instance VI_ACME_BACK {{
    state {state}
    interface bond0.3107
    virtual_router_id 118
    priority {prio}
    virtual_ipaddress {{
        10.77.40.81/32 dev bond0.3107
    }}
}}
virtual_server {VIP} 443 {{
    delay_loop 3
    lb_algo wlc
    lb_kind DR
    protocol TCP
    real_server 10.77.31.41 443 {{
        weight 2
        SSL_GET {{
            url {{
                path /healthz?token=4f9a8c2e71b3&svc=acme-shop
                digest 9b1e5a0c2d3f4e5a6b7c8d9e0f1a2b3c
            }}
            virtualhost shop.acme-internal.net
            connect_timeout 2
        }}
    }}
    real_server 10.77.31.42 443 {{
        weight 2
        HTTP_GET {{
            url {{
                path /healthz?token=4f9a8c2e71b3&svc=acme-shop
                status_code 200
            }}
        }}
    }}
}}
"""


def acme_cluster(root: Path) -> Path:
    ipvs = (f"-A -t {VIP}:443 -s wlc\n"
            f"-a -t {VIP}:443 -r 10.77.31.41:443 -g -w 2\n"
            f"-a -t {VIP}:443 -r 10.77.31.42:443 -g -w 2\n")
    gw = route("default", "bond0.3107", "10.77.31.1")
    for me, own, peer, state in (("zeta-lb-7731", "11", "12", "MASTER"),
                                 ("zeta-lb-7732", "12", "11", "BACKUP")):
        d = write_host(root, f"{me}.acme-internal.net", [
            ("bond0", "bond", []),
            ("bond0.3107", "vlan", [f"10.77.31.{own}/24",
                                    eui64("fd3a:acme:7731:3107::/64".replace("acme", "ac3e"),
                                          MACS[me])])],
            routes=[gw, route("10.99.0.0/16", "bond0.3107", "10.77.31.254")],
            sysctls=DIRECTOR_SYSCTLS | {"net.ipv4.conf.bond0/3107.rp_filter": "0"},
            ipvs=ipvs, keepalived=keepalived_conf(me, state, 150 if state == "MASTER" else 100,
                                                  f"10.77.31.{own}", f"10.77.31.{peer}"),
            dirname=me)
        (d / "skipped.txt").write_text(
            "ipvsadm-save.txt: /usr/local/acme/sbin/ipvsadm-save is not executable\n"
            "listen.txt: ss failed reading /proc/4242/net/tcp for zeta-haproxy\n")
        (d / "uname.txt").write_text(f"Linux {me} 5.10.0-acme-zeta-31 #1 SMP x86_64\n")
    for me, rip in (("quux-web-4401", "41"), ("quux-web-4402", "42")):
        d = write_host(root, f"{me}.acme-internal.net", [
            ("eno7.2210", "vlan", [f"10.77.31.{rip}/24",
                                   eui64("fd3a:ac3e:7731:3107::/64", MACS[me])])],
            lo=[f"{VIP}/32"], routes=[route("default", "eno7.2210", "10.77.31.1")],
            sysctls=RS_SYSCTLS | {"net.ipv4.conf.eno7/2210.arp_ignore": "1"},
            listen=listen_lines(("tcp", "0.0.0.0:443")), dirname=me)
        (d / "skipped.txt").write_text("ipvsadm-save.txt: no /sbin/ipvsadm-save on "
                                       f"{me}.acme-internal.net\n")
    # the MACs, as ip -j link would say them
    for d in root.iterdir():
        for f in ("ip-addr.json", "ip-link.json"):
            data = json.loads((d / f).read_text())
            for e in data:
                if e["ifname"] != "lo":
                    e["address"] = MACS[d.name]
            (d / f).write_text(json.dumps(data))
    return root


def leaks(root: Path, text: str) -> list[str]:
    """The distinctive values of the collection that ``text`` holds."""
    words = {"zeta", "quux", "acme", "bond0", "eno7", "Xq9zT7pw", "4f9a8c2e71b3", "healthz",
             "DEADC0FFEE", "9b1e5a0c2d3f", "VI_ACME", "VG_ACME", "RID", "chk_", "failover",
             "haproxy", "/opt/", "/usr/local", "/proc/", "/sbin", "ops-", "shop", str(root),
             root.name}
    numbers = {"7731", "7732", "4401", "4402", "3107", "2210", "117", "118", "119", "4242"}
    for mac in MACS.values():
        b = bytes.fromhex(mac.replace(":", ""))
        iid = f"{b[0] ^ 2:02x}{b[1]:02x}:{b[2]:02x}ff:fe{b[3]:02x}:{b[4]:02x}{b[5]:02x}"
        words |= {mac, mac.replace(":", ""), iid, iid[5:], f"fe{b[3]:02x}:{b[4]:02x}"}
    ips = set()
    for p in root.rglob("*"):
        if p.is_file():
            ips |= {str(ip) for ip, _ in literals(p.read_text())
                    if not (ip.is_loopback or ip.is_multicast or ip.is_unspecified
                            or str(ip).startswith("255."))}
    found = [w for w in words if w.lower() in text.lower()]
    found += [n for n in numbers if re.search(rf"(?<!\d){n}(?!\d)", text)]
    found += [ip for ip in ips if re.search(rf"(?<![\w.:]){re.escape(ip)}(?![\w:]|\.\d)",
                                            text)]
    return sorted(found)


def test_anonymized_output_holds_no_original_value(tmp_path, capsys):
    root = acme_cluster(tmp_path / "acme-collected")
    out = tmp_path / "twin.toml"
    assert main(["import", str(root), "--anonymize", "-o", str(out)]) == 0
    cap = capsys.readouterr()
    text = out.read_text() + cap.out + cap.err
    t = topology_from_dict(tomllib.loads(out.read_text()))  # still a valid twin
    assert [h.name for h in t.hosts] == ["client", "director1", "director2", "rs1", "rs2"]
    assert leaks(root, text) == [], text
    # and the twin keeps what the keepalived configs mean, consistently across the pair
    a = tomllib.loads(out.read_text())["keepalived"]
    iface = t.host("director1").interfaces[0].name
    for host, ka in a.items():
        assert f"interface {iface}" in ka and f"dev {iface} label {iface}:1" in ka
        for word in ("auth_type PASS", "auth_pass pass1", "virtual_router_id 51",
                     "virtual_router_id 52", "vrrp_instance VI_2",
                     f"lvs_sync_daemon {iface} VI_1 id 51",
                     "vrrp_instance VI_1", "vrrp_sync_group VG_1", "track_interface",
                     "SSL_GET", "path /check1", "digest 0000", "virtualhost host1.example.org",
                     f"router_id {host}"):
            assert word in ka, (word, ka)
        if os.geteuid() == 0:  # keepalived -t in a namespace holding the twin's interfaces
            from lab.roles.keepalived import config_test

            f = tmp_path / f"{host}.conf"
            f.write_text(ka)
            config_test(f)

"""Parsers and pure helpers of the builder, roles and probes: no root."""

from lab.builder.build import mac_for, port_name
from lab.builder.sysctl import PINNED_CONF, effective, key_path, plan
from lab.machine.hostcheck import diff
from lab.model import default_dr
from lab.probes.counters import parse_snmp
from lab.roles.director import parse_ip_vs_conn, restore_rules
from lab.roles.realserver import identity_line, parse_identity

IP_VS_CONN = """\
Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP C000020A 9C40 C0000264 0050 C0000265 0050 ESTABLISHED       899
TCP C000020A 9C41 C0000264 0050 C0000266 0050 FIN_WAIT          118
UDP 20010db8:00000000:00000000:0000000a 1F90 2001:0db8:0000:0000:0000:0000:0000:0064 0035 \
2001:0db8:0000:0000:0000:0000:0000:0065 0035 UDP 300
"""


def test_parse_ip_vs_conn():
    conns = parse_ip_vs_conn(IP_VS_CONN.replace(
        "20010db8:00000000:00000000:0000000a", "2001:0db8:0000:0000:0000:0000:0000:000a"))
    assert len(conns) == 3
    c = conns[0]
    assert (c.protocol, c.client, c.cport, c.vip, c.vport, c.dest, c.dport) == (
        "tcp", "192.0.2.10", 40000, "192.0.2.100", 80, "192.0.2.101", 80)
    assert (c.state, c.expires) == ("ESTABLISHED", 899)
    assert conns[1].state == "FIN_WAIT" and conns[1].dest == "192.0.2.102"
    assert conns[2].client == "2001:db8::a" and conns[2].dest == "2001:db8::65"


def test_restore_rules_for_dr():
    t = default_dr(rs=2, scheduler="wrr", weights={"rs2": 3}, persistence=60)
    assert restore_rules(t) == (
        "-A -t 192.0.2.100:80 -s wrr -p 60\n"
        "-a -t 192.0.2.100:80 -r 192.0.2.101:80 -g -w 1\n"
        "-a -t 192.0.2.100:80 -r 192.0.2.102:80 -g -w 3\n")
    assert restore_rules(default_dr(protocol="udp", port=53)).startswith(
        "-A -u 192.0.2.100:53 -s rr\n")


def test_sysctl_key_path_and_plan_order():
    assert key_path("net.ipv4.conf.eth0.arp_ignore") == "sys/net/ipv4/conf/eth0/arp_ignore"
    assert key_path("net.ipv4.vs.conntrack") == "sys/net/ipv4/vs/conntrack"
    writes = plan(["eth0"], {"net.ipv4.conf.eth0.arp_ignore": "1",
                             "net.ipv4.conf.all.forwarding": "1"})
    keys = [k for k, _ in writes]
    # every pinned knob on all/default/lo/eth0 exactly once
    for dev in ("all", "default", "lo", "eth0"):
        for knob in PINNED_CONF:
            assert keys.count(f"net.ipv4.conf.{dev}.{knob}") == 1
    # overrides come last, 'all' before devices; the pinned value is not written for them
    assert writes[-2:] == [("net.ipv4.conf.all.forwarding", "1"),
                           ("net.ipv4.conf.eth0.arp_ignore", "1")]


def test_effective_takes_max_of_all_and_dev():
    v = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.eth0.arp_ignore": "0",
         "net.ipv4.conf.all.forwarding": "1", "net.ipv4.conf.eth0.forwarding": "0"}
    assert effective(v, "eth0", "arp_ignore") == 1
    assert effective(v, "eth0", "forwarding") == 0


def test_snmp_parser():
    text = ("Ip: Forwarding DefaultTTL InAddrErrors\nIp: 2 64 7\n"
            "Tcp: RtoAlgorithm ActiveOpens\nTcp: 1 12\n")
    assert parse_snmp(text) == {"Ip.Forwarding": 2, "Ip.DefaultTTL": 64, "Ip.InAddrErrors": 7,
                                "Tcp.RtoAlgorithm": 1, "Tcp.ActiveOpens": 12}


def test_identity_round_trip():
    line = identity_line("rs1", ("192.0.2.10", 40000), ("192.0.2.100", 80)).decode()
    assert parse_identity(line) == ("rs1", ("192.0.2.10", 40000), ("192.0.2.100", 80))


def test_names_fit_ifnamsiz_and_macs_are_unique():
    assert port_name("rs1", "eth0", 0) == "rs1-eth0"
    assert len(port_name("director", "longname0", 3)) <= 15
    macs = {mac_for(h, i) for h in range(150) for i in range(4)}
    assert len(macs) == 600
    assert all(int(m.split(":")[0], 16) & 2 for m in macs)  # locally administered


def test_hostcheck_diff():
    a = {"links": ["eth0 up"], "sysctls": {"k": "0"}, "ipvs": "x"}
    b = {"links": ["eth0 up", "veth9 up"], "sysctls": {"k": "1"}, "ipvs": "y"}
    assert diff(a, a) == []
    assert diff(a, b) == ["links: added veth9 up", "sysctls: k 0 -> 1", "ipvs: changed"]


def test_fwmark_service_rules():
    from lab.roles.director import nft_rules

    t = default_dr(fwmark=7, extra_ports=(8080,))
    assert restore_rules(t) == (
        "-A -f 7 -s rr\n"
        "-a -f 7 -r 192.0.2.101 -g -w 1\n"
        "-a -f 7 -r 192.0.2.102 -g -w 1\n")
    nft = nft_rules(t)
    assert "ip daddr 192.0.2.100 tcp dport { 80, 8080 } meta mark set 7" in nft
    assert nft_rules(default_dr()) == ""

"""Frame building and decoding used by the probes, checked against scapy.

Every Ether() here names both MACs: left to itself scapy resolves the
destination by ARP/NDP on the host's own network (root namespace), which a
test must never do.
"""

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from lab.wire.frames import arp_frame, decode, parse_arp, tcp_frame

A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def test_arp_frame_matches_scapy():
    raw = arp_frame(1, "02:d1:00:00:01:01", "192.0.2.10", "192.0.2.100")
    pkt = Ether(raw)
    assert pkt.dst == "ff:ff:ff:ff:ff:ff"
    assert pkt[ARP].op == 1 and pkt[ARP].psrc == "192.0.2.10" and pkt[ARP].pdst == "192.0.2.100"
    assert pkt[ARP].hwsrc == "02:d1:00:00:01:01"


def test_parse_arp_reply():
    raw = bytes(Ether(src="02:d1:00:00:02:01", dst="02:d1:00:00:01:01") /
                ARP(op=2, hwsrc="02:d1:00:00:02:01", psrc="192.0.2.100",
                    hwdst="02:d1:00:00:01:01", pdst="192.0.2.10"))
    a = parse_arp(raw)
    assert (a.op, a.hwsrc, a.psrc, a.pdst) == (2, "02:d1:00:00:02:01", "192.0.2.100",
                                               "192.0.2.10")
    assert parse_arp(bytes(Ether(src=A, dst=B) / IP())) is None


def test_decode_tcp_udp_ipv6():
    x = decode(bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") /
                     IP(src="192.0.2.10", dst="192.0.2.100") / TCP(sport=40000, dport=80,
                                                                   flags="SA")))
    assert (x.eth_src, x.eth_dst, x.src, x.dst, x.proto, x.sport, x.dport, x.flags) == (
        "02:00:00:00:00:01", "02:00:00:00:00:02", "192.0.2.10", "192.0.2.100", 6, 40000, 80,
        "SA")
    u = decode(bytes(Ether(src=A, dst=B) / IP(src="192.0.2.1", dst="192.0.2.2")
                     / UDP(sport=1, dport=53)))
    assert (u.proto, u.sport, u.dport, u.flags) == (17, 1, 53, "")
    v6 = decode(bytes(Ether(src=A, dst=B) / IPv6(src="2001:db8::1", dst="2001:db8::64") /
                      TCP(sport=5, dport=80, flags="PA")))
    assert (v6.src, v6.dst, v6.flags) == ("2001:db8::1", "2001:db8::64", "PA")
    assert "tcp 192.0.2.10:40000 > 192.0.2.100:80 [SA]" in x.summary()


def test_decode_names_every_tcp_flag_as_scapy_does():
    # URG, ECE and CWR too (an ECN-setup SYN is "SEC"): decode once saw only the five
    # flags tcp_frame builds, when a second TCP_FLAGS shadowed the first (found by mypy)
    for flags in ("SEC", "FSRPAUEC", "U", "PAE", "SAE"):
        x = decode(bytes(Ether(src=A, dst=B) / IP(src="192.0.2.1", dst="192.0.2.2")
                         / TCP(sport=1, dport=2, flags=flags)))
        assert x.flags == str(TCP(flags=flags).flags) == flags


def test_tcp_frame_matches_scapy_checksums_included():
    raw = tcp_frame(A, B, "198.51.100.10", "192.0.2.100", 40000, 80, "S", seq=123456789)
    pkt = Ether(raw)
    assert (pkt.src, pkt.dst) == (A, B)
    ip, tcp = pkt[IP], pkt[TCP]
    assert (ip.src, ip.dst, ip.ttl, ip.len) == ("198.51.100.10", "192.0.2.100", 64, 40)
    assert (tcp.sport, tcp.dport, str(tcp.flags), tcp.seq) == (40000, 80, "S", 123456789)
    # scapy recomputes both checksums from the fields: they must be what we sent
    again = Ether(bytes(Ether(src=A, dst=B) / IP(src=ip.src, dst=ip.dst, id=ip.id, flags=0)
                        / TCP(sport=40000, dport=80, flags="S", seq=123456789, window=8192)))
    assert (ip.chksum, tcp.chksum) == (again[IP].chksum, again[TCP].chksum)
    assert str(Ether(tcp_frame(A, B, "192.0.2.1", "192.0.2.2", 1, 2, "SA"))[TCP].flags) == "SA"

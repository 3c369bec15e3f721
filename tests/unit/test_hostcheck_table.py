"""The root namespace's IPVS table in the host check: its services and real servers."""

from lab.machine.hostcheck import diff, ipvs_entries

HEADER = ("IP Virtual Server version 1.2.1 (size=4096)\n"
          "Prot LocalAddress:Port Scheduler Flags\n"
          "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n")
TABLE = HEADER + ("TCP  C0000264:0050 rr \n"
                  "  -> C0000266:0050      Route   1      {active}          0         \n"
                  "FWM  00000001 wrr persistent 300 FFFFFFFF\n")


def test_an_empty_table_is_no_table():
    # "(no IPVS)" before ip_vs is loaded reads as []: loading it is not a change
    assert ipvs_entries(HEADER) == []
    assert diff({"ipvs": []}, {"ipvs": ipvs_entries(HEADER)}) == []


def test_services_and_real_servers_are_compared_without_counters():
    busy, idle = TABLE.format(active=7), TABLE.format(active=0)
    assert ipvs_entries(idle) == ["FWM 00000001 wrr persistent 300 FFFFFFFF",
                                  "TCP 192.0.2.100:80 rr",
                                  "TCP 192.0.2.100:80 rr -> 192.0.2.102:80 Route 1"]
    assert diff({"ipvs": ipvs_entries(idle)}, {"ipvs": ipvs_entries(busy)}) == []
    assert diff({"ipvs": []}, {"ipvs": ipvs_entries(idle)}) == [
        "ipvs: added FWM 00000001 wrr persistent 300 FFFFFFFF",
        "ipvs: added TCP 192.0.2.100:80 rr",
        "ipvs: added TCP 192.0.2.100:80 rr -> 192.0.2.102:80 Route 1"]
    weight2 = idle.replace("Route   1", "Route   2")
    assert diff({"ipvs": ipvs_entries(idle)}, {"ipvs": ipvs_entries(weight2)}) == [
        "ipvs: added TCP 192.0.2.100:80 rr -> 192.0.2.102:80 Route 2",
        "ipvs: removed TCP 192.0.2.100:80 rr -> 192.0.2.102:80 Route 1"]


def test_ipv6_addresses_are_shown_short():
    t = HEADER + ("UDP  [2001:0db8:0000:0000:0000:0000:0000:0064]:0035 sh \n"
                  "  -> [2001:0db8:0000:0000:0000:0000:0000:0065]:0035      Route   1      0   0\n")
    assert ipvs_entries(t) == ["UDP [2001:db8::64]:53 sh",
                               "UDP [2001:db8::64]:53 sh -> [2001:db8::65]:53 Route 1"]

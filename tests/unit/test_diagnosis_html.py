"""``drlab diagnose --html``: the page draws the twin, marks each finding on its hosts,
lists the evidence; self-contained, escaped, and it renders in headless Chromium."""

from __future__ import annotations

import re
import subprocess
from html import unescape

from lab.model import topology_from_dict
from lab.probes.labcheck import Symptom, SymptomKind, answers_arp, connection_failed
from lab.report.diagnosis import PREDICTION, html
from lab.scenarios import REGISTRY
from lab.scenarios.diagnose import Diagnosis, Finding, RealServerCheck, RsStatus, ServiceResult

EVIL = "web-03<script>alert(1)</script>"
FOLDED = [f"web-{n:02d}.example" for n in range(4, 22)]


def _topology():
    lan = "ens192"
    d = {
        "name": "prod-web",
        "segments": ["lan", "mgmt"],
        "hosts": {
            "client": {"role": "client", "interfaces": [
                {"name": "eth0", "segment": "lan", "addresses": ["192.0.2.10/24"]}]},
            "dir1": {"role": "director", "label": "lvs-a.example", "interfaces": [
                {"name": lan, "segment": "lan", "addresses": ["192.0.2.2/24", "192.0.2.100/32"]}]},
            "dir2": {"role": "director", "label": "lvs-b.example", "interfaces": [
                {"name": lan, "segment": "lan", "addresses": ["192.0.2.3/24", "192.0.2.200/32"]}]},
            "web1": {"role": "realserver", "label": "web-01.example", "represents": FOLDED,
                     "interfaces": [
                         {"name": "eth0", "segment": "lan", "addresses": ["192.0.2.101/24"]},
                         {"name": "dummy0", "kind": "dummy",
                          "addresses": ["192.0.2.100/32", "192.0.2.200/32"]}],
                     "sysctls": {"net.ipv4.conf.all.arp_ignore": "1",
                                 "net.ipv4.conf.all.arp_announce": "2"}},
            "web2": {"role": "realserver", "label": "web-02.example", "interfaces": [
                {"name": "eth0", "segment": "lan", "addresses": ["192.0.2.102/24"]}],
                "lo": ["192.0.2.100/32"],
                "sysctls": {"net.ipv4.conf.lo.arp_ignore": "1",
                            "net.ipv4.conf.lo.arp_announce": "2"}},
            "web3": {"role": "realserver", "label": EVIL, "interfaces": [
                {"name": "eth0", "segment": "lan", "addresses": ["192.0.2.103/24"]},
                {"name": "eth1", "segment": "mgmt", "addresses": ["198.51.100.3/24"]}],
                "lo": [{"cidr": "192.0.2.100/32", "scope": "host"}, "192.0.2.200/32"],
                "sysctls": {"net.ipv4.conf.all.arp_ignore": "1",
                            "net.ipv4.conf.all.arp_announce": "2",
                            "net.ipv4.conf.all.rp_filter": "1"}},
        },
        "services": [
            {"vip": "192.0.2.100", "port": 80, "director": "dir1",
             "real_servers": ["web1", "web2", "web3"]},
            {"vip": "192.0.2.200", "port": 443, "director": "dir2",
             "real_servers": ["web1", {"host": "web3", "listen": "rip"}]},
        ],
    }
    return topology_from_dict(d)


def diagnosis() -> Diagnosis:
    """A diagnosis of that cluster, built by hand (no IPVS here)."""
    refused = "connect 192.0.2.200:443: [Errno 111] Connection refused"
    return Diagnosis(
        "prod-web", "6.1.0-56-amd64", _topology(),
        findings=[
            Finding(REGISTRY["sysctls-on-lo-only"], ["web-02.example"], "192.0.2.100:80/tcp",
                    "arp_ignore/arp_announce were 'set' but real servers still answer ARP "
                    "for the VIP",
                    ["web-02.example answered who-has 192.0.2.100 in the census from the "
                     "client's first hop",
                     "web-02.example holds the VIP on lo /32 scope global; arp_ignore "
                     "all=0 eth0=0 lo=1"],
                    "set them on all (and the LAN interface)", True),
            Finding(REGISTRY["healthcheck-on-rip-only"], [EVIL], "192.0.2.200:443/tcp",
                    "keepalived says every real server is healthy, yet some connections to "
                    "the VIP are refused",
                    [f"2 of 4 connections failed: {refused}",
                     f"{EVIL}'s service listens only on its own address, not on the VIP "
                     "(listen.txt)"],
                    "make the service listen on the VIP (or every address), and check what DR "
                    "uses", True),
            Finding(REGISTRY["rp-filter-multihomed"], [EVIL], "192.0.2.100:80/tcp",
                    "a multi-homed real server drops every DR request",
                    [f"{EVIL} has 2 interfaces with strict rp_filter=1: requests from "
                     "clients it routes back through another interface are dropped"],
                    "loose rp_filter (2) on that real server", False),
        ],
        services=[
            ServiceResult("192.0.2.100:80/tcp", "dir1", ["dir1", "web2"], 6, [],
                          {"web1": 2, "web2": 2, "web3": 2}, "dir1",
                          [answers_arp("web2", "192.0.2.100")],
                          "client -> dir1 (MAC rewrite) -> web1/web2/web3: ok",
                          real_servers=[RealServerCheck(h, RsStatus.VERIFIED)
                                        for h in ("web1", "web2", "web3")]),
            ServiceResult("192.0.2.200:443/tcp", "dir2", ["dir2"], 4, [refused, refused],
                          {"web1": 2}, "dir2",
                          [connection_failed("192.0.2.200", refused)] * 2,
                          "client -> dir2 -> web3: RST",
                          real_servers=[RealServerCheck("web1", RsStatus.VERIFIED),
                                        RealServerCheck("web3", RsStatus.FAILED, refused)]),
        ],
        notes=["web-01.example stands for 18 identical real server(s): "
               + ", ".join(FOLDED[:5]) + " ...", "a note with <b>markup</b> & an ampersand"])


def _text(page: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", page))


def test_page_is_self_contained_and_escaped():
    page = html(diagnosis())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page  # no script of ours, and the label's is text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>markup</b>" not in page and "&lt;b&gt;markup&lt;/b&gt;" in page
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//)', page)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert "<style>" in page and "<svg" in page


def test_header_every_host_and_vip_placement_is_drawn():
    page = html(diagnosis())
    assert "prod-web" in page and "6.1.0-56-amd64" in page
    assert re.search(r'id="verdict" class="verdict bad">3 findings<', page)
    drawing = page[page.index("<svg"):page.index("</svg>")]
    for shown in ["client", "lvs-a.example", "lvs-b.example", "web-01.example",
                  "web-02.example", "web-03&lt;script&gt;alert(1)&lt;/script&gt;"]:
        assert f">{shown} <tspan" in drawing, shown
    for lab in ["dir1", "dir2", "web1", "web2", "web3"]:
        assert f"lab host {lab}<" in drawing
    assert "segment lan" in drawing and "segment mgmt" in drawing
    assert "stands for 18 identical" in drawing
    # the VIP wherever it is held: on the LAN interface, a dummy, lo (with prefix and scope)
    assert re.search(r'>ens192 192\.0\.2\.2/24</text><text[^>]*class="addr vip"[^>]*> +'
                     r'192\.0\.2\.100/32<', drawing)
    assert re.search(r'class="addr vip"[^>]*>dummy0 192\.0\.2\.100/32<', drawing)
    assert re.search(r'class="addr vip"[^>]*>lo +192\.0\.2\.100/32 scope host<', drawing)
    hosts = page[page.index('<table id="hosts">'):]
    hosts = hosts[:hosts.index("</table>")]
    assert "dummy0 (dummy) /32" in hosts and "lo /32" in hosts
    assert "ens192 (LAN lan) /32" in hosts and "lo /32 scope host" in hosts
    assert "stands for 18 identical: web-04.example" in hosts


def _badges(page: str) -> dict[str, list[str]]:
    """Host (lab name) -> the badge texts on its box."""
    drawing = page[page.index("<svg"):page.index("</svg>")]
    boxes = drawing.split('<g class="hostbox" data-host="')[1:]
    return {b[:b.index('"')]: re.findall(r'data-badge="([^"]+)"', b) for b in boxes}


def test_finding_badges_on_their_hosts_healthy_hosts_ticked():
    page = html(diagnosis())
    assert _badges(page) == {"client": ["\u2713"], "dir1": ["\u2713"], "dir2": ["\u2713"],
                             "web1": ["\u2713"], "web2": ["1"], "web3": ["2", "3"]}
    web3 = page[page.index('data-host="web3"'):]
    assert '<circle cx="' in web3 and 'fill="#e8590c"' in web3.split('data-badge="3"')[1][:300]


def test_every_finding_listed_with_its_evidence_and_fix():
    data = diagnosis()
    page = html(data)
    text = _text(page)
    for n, f in enumerate(data.findings, 1):
        art = page[page.index(f'id="finding-{n}"'):]
        art = _text(art[:art.index("</article>")])
        assert f.name in art and f.service in art and f.symptom in art
        assert f.fix in art
        for h in f.hosts:
            assert h in art
        for e in f.evidence:
            assert e in art
        assert (PREDICTION in art) is (not f.measured)
    assert text.count(PREDICTION) == 1 + 1  # the finding's label, the badge's tooltip
    assert "prediction \u2014 not measured in the twin" in text


def test_service_table_census_connections_spread_and_notes():
    page = html(diagnosis())
    table = page[page.index('<table id="services">'):]
    table = table[:table.index("</table>")]
    rows = table.split("<tr>")[2:]
    assert len(rows) == 2
    one, two = (_text(r) for r in rows)
    assert "lvs-a.example, web-02.example" in one and " 6/6 " in one
    assert "web-01.example: 2" in one and "web-03<script>alert(1)</script>: 2" in one
    assert " 2/4 " in two and "web-01.example: 2" in two
    assert "web-03<script>alert(1)</script>: 0" in two  # a real server that served none
    assert 'class="bad">2/4<' in table
    notes = _text(page[page.index('<ul id="notes">'):])
    assert "web-01.example stands for 18 identical" in notes


def test_no_finding_is_ok():
    data = diagnosis()
    data.findings = []
    data.services[1].real_servers[1].status = RsStatus.VERIFIED
    page = html(data)
    assert 'class="verdict ok">OK<' in page and "No finding" in page
    assert set(sum(_badges(page).values(), [])) == {"\u2713"}


def test_unreached_real_servers_are_not_verified_and_bypass_is_a_failure():
    """#26: the example cluster as diagnose measured it before: all 6 connections went
    straight to web3 (its ARP answer moved the client's entry), none reached web1 or
    web2, and no pass through the director ran."""
    data = diagnosis()
    data.findings = data.findings[:1]
    bypass = answers_arp("web2", "192.0.2.100")
    path = [Symptom(SymptomKind.PATH, "192.0.2.100", detail=f"web2 192.0.2.10:{port}: no "
                    "request to the director's MAC") for port in range(40000, 40006)]
    data.services = [ServiceResult(
        "192.0.2.100:80/tcp", "dir1", ["dir1", "web2"], 6, [], {"web2": 6}, "web2",
        [bypass, *path], bypassed=6)]
    page = html(data)
    badges = _badges(page)
    assert badges["web1"] == ["?"] and badges["web3"] == ["?"] and badges["web2"] == ["1"]
    assert badges["dir1"] == ["\u2713"]
    table = page[page.index('<table id="services">'):]
    table = table[:table.index("</table>")]
    assert 'class="bad">6/6<br><small>6 bypassed the director' in table
    assert _text(table).count("web2: no request to the director's MAC") == 1
    assert "\u00d76" in table and "40001" not in _text(table).split("path proof")[0]
    assert re.search(r"web-01\.example: 0 +not verified", _text(table))
    hosts = page[page.index('<table id="hosts">'):]
    assert "none found, not verified" in hosts


def test_diagnosis_renders_in_headless_chromium(tmp_path, chromium):
    page = tmp_path / "diagnosis.html"
    page.write_text(html(diagnosis()))
    # (a profile of its own: headless Chromium fails without a writable one, as where
    # root's home is read-only, e.g. scripts/vm-run's VM)
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium'}"]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    for name in ["sysctls-on-lo-only", "healthcheck-on-rip-only", "rp-filter-multihomed"]:
        assert f'data-finding="{name}"' in dom
    assert "<svg" in dom and "stands for 18 identical" in dom
    assert "&lt;script&gt;alert(1)" in dom and "<script>alert" not in dom
    shot = tmp_path / "diagnosis.png"
    subprocess.run([*args, "--window-size=1600,1200", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a page, not a blank

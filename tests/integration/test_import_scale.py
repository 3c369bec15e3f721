"""drlab import of a collected cluster at scale (issue #27): 5,000 services, written
by tests/gen_collected.py as scripts/collect writes them, imported by the real CLI
on the host (the import reads files only: no IPVS, no root needed)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import gen_collected  # noqa: E402

DRLAB = Path(sys.executable).parent / "drlab"
SERVICES = 5000


def test_import_of_5000_services_keeps_them_all_and_says_it_briefly(tmp_path: Path) -> None:
    d = tmp_path / "collected"
    d.mkdir()
    gen_collected.write_cluster(d, SERVICES)
    out = tmp_path / "cluster.toml"
    r = subprocess.run([str(DRLAB), "import", str(d), "-o", str(out)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    t = tomllib.loads(out.read_text())
    vips = gen_collected.vips(SERVICES)
    assert [s["vip"] for s in t["services"]] == vips
    assert {s["director"] for s in t["services"]} == {"lvs1"}
    rs = {n: h for n, h in t["hosts"].items() if h["role"] == "realserver"}
    assert rs, list(t["hosts"])
    for n, h in rs.items():   # every VIP on every real server's lo
        assert {a.split("/")[0] for a in h["lo"]} >= set(vips), n
    # the client reaches the VIPs through a few aggregated routes holding exactly them
    client = t["hosts"]["client"]
    nets = [ipaddress.ip_network(r["dst"]) for r in client["routes"]]
    assert len(nets) < 40
    assert sum(n.num_addresses for n in nets) == SERVICES
    assert all(ipaddress.ip_address(v) in ipaddress.ip_network("198.18.0.0/15") for v in vips)
    # notes stay readable: ranges, not 5,000 addresses on a line
    lines = r.stderr.splitlines()
    assert lines and all(len(x) < 400 for x in lines), max(lines, key=len)[:200]
    assert any("198.18.0.1-198.18.19.136 (5000 addresses)" in x for x in lines), lines

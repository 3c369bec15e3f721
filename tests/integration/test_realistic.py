"""A director that is also a real server, and real server software (http.server + curl)."""

import shutil
import subprocess
import sys
from collections import Counter

import pytest

from lab.model import RealServer, default_dr
from lab.roles import client, director
from lab.util import wait_for

pytestmark = pytest.mark.ipvs


def test_director_as_local_real_server(lab_factory):
    t = default_dr(rs=1)
    t.service.real_servers.append(RealServer("director"))
    lab = lab_factory(t)
    replies = [client.connect(lab) for _ in range(4)]
    assert Counter(r.server for r in replies) == {"rs1": 2, "director": 2}
    assert all(r.peer == ("192.0.2.100", 80) for r in replies)
    svc = director.read_service(lab)
    # configured as DR; the director's own address is served by its local stack
    assert {d.addr: (d.forwarding, d.local) for d in svc.dests} == {
        "192.0.2.101": ("dr", False), "192.0.2.2": ("dr", True)}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_real_http_servers_behind_the_vip(lab_factory, tmp_path):
    lab = lab_factory(default_dr(port=8000), services=False)
    procs = []
    try:
        for rs in ("rs1", "rs2"):
            root = tmp_path / rs
            root.mkdir()
            (root / "index.html").write_text(f"served by {rs}\n")
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", lab.ns(rs), sys.executable, "-m", "http.server",
                 "8000", "--bind", "0.0.0.0", "--directory", str(root)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            lab.add_pid(procs[-1].pid)

        def curl() -> str:
            p = subprocess.run(["ip", "netns", "exec", lab.ns("client"), "curl", "-s",
                                "--max-time", "5", "http://192.0.2.100:8000/"],
                               capture_output=True, text=True)
            return p.stdout.strip() if p.returncode == 0 else ""

        # http.server takes a moment to start (slow in the VM): poll until both answer
        seen = Counter()
        wait_for(lambda: seen.update([curl()]) or {"served by rs1", "served by rs2"} <= set(seen),
                 timeout=60, what="both http servers to answer through the VIP")
        assert set(seen) - {""} == {"served by rs1", "served by rs2"}
    finally:
        for p in procs:
            p.kill()
            p.wait()
